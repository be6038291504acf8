"""What every benchmark reports about the machine it ran on."""

from __future__ import annotations

import importlib
import os
import platform
from pathlib import Path


def loadavg() -> list[float]:
    try:
        return [float(v) for v in Path("/proc/loadavg").read_text().split()[:3]]
    except OSError:
        return []


def _first(path: str, prefix: str) -> str | None:
    try:
        return next(line.split(":", 1)[1].strip() for line in Path(path).read_text().splitlines() if line.startswith(prefix))
    except (OSError, StopIteration):
        return None


def machine_facts(*modules: str) -> dict:
    """CPU, cores, memory, OS, Python, load, and the version of each module named."""
    mem_kb = _first("/proc/meminfo", "MemTotal")
    facts = {
        "cpu": _first("/proc/cpuinfo", "model name") or "unknown",
        "cores_online": os.cpu_count(),
        "cores_usable": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "memory_gb": round(int(mem_kb.split()[0]) / 1024 / 1024, 1) if mem_kb else None,
        "os": platform.platform(),
        "python": platform.python_version(),
        "loadavg_start": loadavg(),
    }
    for name in modules:
        module = importlib.import_module(name)
        facts["opencv" if name == "cv2" else name] = getattr(module, "__version__", "?")
    return facts
