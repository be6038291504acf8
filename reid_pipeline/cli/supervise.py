"""Keeping `reid up` to one per home, and cleaning up after it however it ends.

- `UpLock`: an exclusive `flock` on `$REID_HOME/reid-up.lock`, holding the PID and the UI's
  URL. A second `reid up` on the same home finds it taken and says who holds it. The kernel
  drops the lock when its process dies, SIGKILL included, so a killed `reid up` never
  blocks the next one.
- `start_reaper`: a small watchdog in its own session. When the `reid up` process is gone
  (a normal exit, Ctrl-C or SIGKILL), it ends the process group of Dagster's services (SIGTERM, then
  SIGKILL after a grace period) and stops the embedded Postgres that `reid up` started.
  Run as `python -m reid_pipeline.cli.supervise WATCH_PID GROUP_ID [PGDATA]`.
- `run_group`: commands started in one process group of their own (Dagster's webserver and
  daemon), with the reaper behind them, until one of them ends or this process is told to
  stop; then the whole group is ended.
"""

from __future__ import annotations

import fcntl
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path


class UpLock:
    """The lock that makes one `reid up` per home; `acquire` returns None or the holder."""

    def __init__(self, home: str | os.PathLike) -> None:
        self.path = Path(home) / "reid-up.lock"
        self._file = None

    def acquire(self, url: str) -> dict | None:
        """Take the lock and write our PID and URL; when another process holds it, return
        what it wrote ({"pid", "url"}) and take nothing."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        handle = open(self.path, "a+")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            try:
                holder = json.loads(handle.read() or "{}")
            except json.JSONDecodeError:
                holder = {}
            handle.close()
            return {"pid": holder.get("pid", "?"), "url": holder.get("url", "?")}
        handle.seek(0)
        handle.truncate()
        handle.write(json.dumps({"pid": os.getpid(), "url": url}))
        handle.flush()
        self._file = handle  # held open (and locked) until released or this process ends
        return None

    def release(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


def running_ui(home: str | os.PathLike) -> str | None:
    """The Dagster UI's URL when a `reid up` holds this home's lock now, else None."""
    path = Path(home) / "reid-up.lock"
    if not path.exists():
        return None
    with open(path) as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:  # held: `reid up` runs
            try:
                return json.loads(handle.read() or "{}").get("url")
            except json.JSONDecodeError:
                return None
        fcntl.flock(handle, fcntl.LOCK_UN)
        return None


def start_reaper(watch_pid: int, group: int, pgdata: str | os.PathLike | None = None) -> subprocess.Popen:
    """Start the watchdog for `watch_pid` (see the module docstring)."""
    command = [sys.executable, "-m", "reid_pipeline.cli.supervise", str(watch_pid), str(group)]
    if pgdata is not None:
        command.append(str(pgdata))
    return subprocess.Popen(command, start_new_session=True, stdin=subprocess.DEVNULL)


def run_group(commands: list[list[str]], cwd: str | os.PathLike, own_pgdata: str | os.PathLike | None = None,
              on_end: Callable[[int, int], None] | None = None, poll_s: float = 0.5,
              watch: Callable[[], None] | None = None, watch_every_s: float = 2.0) -> tuple[int | None, int]:
    """Run `commands` in one process group of their own (the first one's), with default
    signal handlers, and a reaper that ends the group (and stops the Postgres in
    `own_pgdata`) when this process is gone, even after a SIGKILL. SIGINT or SIGTERM to this
    process stops the group. When one command ends by itself, `on_end(index, exit code)` is
    called before the others are stopped. Returns once the whole group has ended: (the index
    of the command that ended by itself, or None when this process was told to stop; its
    exit code). `watch`, when given, is called every `watch_every_s` while the group runs
    (`EmbeddedWatch`: the embedded Postgres started again when it dies)."""
    def restore_signals() -> None:  # started from a script in the background, SIGINT/SIGTERM may be ignored
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)

    procs: list[subprocess.Popen] = []
    for command in commands:
        # one process group of their own (the first one's): ended as one, and a Ctrl-C in the
        # terminal reaches only this process, which stops them in order
        procs.append(subprocess.Popen(command, cwd=cwd, preexec_fn=restore_signals,
                                      process_group=procs[0].pid if procs else 0))
        if len(procs) == 1:
            start_reaper(os.getpid(), procs[0].pid, own_pgdata)
    stopping = threading.Event()

    def forward(signum, _frame) -> None:
        stopping.set()
        try:
            os.killpg(procs[0].pid, signal.SIGTERM)
        except ProcessLookupError:
            pass

    signal.signal(signal.SIGINT, forward)
    signal.signal(signal.SIGTERM, forward)
    watched = time.monotonic()
    while all(p.poll() is None for p in procs):
        time.sleep(poll_s)
        if watch is not None and not stopping.is_set() and time.monotonic() - watched >= watch_every_s:
            watched = time.monotonic()
            try:
                watch()
            except Exception as exc:  # noqa: BLE001 (a watcher never takes the services down)
                print(f"reid: {exc!r}", file=sys.stderr, flush=True)
    ended = next(i for i, p in enumerate(procs) if p.poll() is not None)
    if on_end is not None and not stopping.is_set():
        on_end(ended, procs[ended].returncode)
    end_group(procs[0].pid)  # the others and whatever they started (code servers)
    for p in procs:
        p.wait()
    return (None if stopping.is_set() else ended), procs[ended].returncode


class EmbeddedWatch:
    """The embedded Postgres that `reid up` started, started again when it is gone (killed,
    crashed), with a line on the console each time; `on_back(down_since)` is called once it
    answers again (epoch seconds when it was found down)."""

    def __init__(self, pgdata: str | os.PathLike, say: Callable[[str], None],
                 on_back: Callable[[float], None] | None = None) -> None:
        self.pgdata, self.say, self.on_back = Path(pgdata), say, on_back
        self.down_since: float | None = None
        self.restarts = 0

    def __call__(self) -> None:
        from reid_pipeline.database import embedded_running, embedded_server

        if embedded_running(self.pgdata):
            return
        if self.down_since is None:
            self.down_since = time.time()
            self.say(f"the embedded Postgres in {self.pgdata} is not running (killed or crashed); starting it again")
        try:
            embedded_server(self.pgdata)  # starts it when it is not running
        except Exception as exc:  # noqa: BLE001 (old backends may hold its memory for a moment: next time)
            self.say(f"could not start the embedded Postgres yet ({str(exc).strip()[:200]}); trying again")
            return
        if not embedded_running(self.pgdata):
            return
        down_since, self.down_since = self.down_since, None
        self.restarts += 1
        self.say(f"the embedded Postgres is back after {time.time() - down_since:.0f} s; runs that failed"
                 " meanwhile are retried")
        if self.on_back is not None:
            self.on_back(down_since)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie (dead, not yet reaped by its parent) counts as gone
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return True


def end_group(group: int, grace_s: float = 5.0) -> None:
    """SIGTERM a process group, wait up to `grace_s` for it to empty, then SIGKILL it."""
    try:
        os.killpg(group, signal.SIGTERM)
        deadline = time.monotonic() + grace_s
        while time.monotonic() < deadline:
            os.killpg(group, 0)  # raises once the group is empty
            time.sleep(0.2)
        os.killpg(group, signal.SIGKILL)
    except ProcessLookupError:
        pass


def reap(watch_pid: int, group: int, pgdata: str | None, poll_s: float = 0.5) -> None:
    while _alive(watch_pid):
        time.sleep(poll_s)
    end_group(group)
    if pgdata:
        from reid_pipeline.database import stop_embedded

        stop_embedded(pgdata)


if __name__ == "__main__":
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # a Ctrl-C in the terminal is for reid up, not for us
    reap(int(sys.argv[1]), int(sys.argv[2]), sys.argv[3] if len(sys.argv) > 3 else None)
