"""What counts as a new video, the same for a watched folder (`inbox`) and a watched bucket
(`buckets`): a file's partition key, the names that are never taken (hidden, partial
downloads, not videos, folders named like videos) with the reason, and the settle rule
that takes a file only once it holds still. Both scans import this; it imports only
`video` (the suffixes of videos)."""

from __future__ import annotations

import hashlib
import os
import re
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from urllib.parse import unquote

from reid_pipeline.ingest.video import VIDEO_SUFFIXES

# Names that copy tools and browsers use while a file is still arriving.
PARTIAL_SUFFIXES = frozenset({".part", ".partial", ".crdownload", ".download", ".tmp", ".temp", ".filepart", ".!qb"})


def partition_key_for(location: str) -> str:
    """A stable, unique, Dagster-safe key for a file: a readable ASCII slug of its name and
    8 hex digits of a hash of its full location (an absolute path, or an s3:// URI), so two
    files of the same name in different folders or buckets never share a key.

    e.g. `/srv/in/Zoë, Paris [2024].mp4` -> `zoe_paris_2024-3f9a1c2e`. Only [a-z0-9_-]
    remain, so keys never hold commas or brackets and backfill from the UI works."""
    location = str(location)
    stem = PurePosixPath(unquote(location.replace(os.sep, "/").rstrip("/"))).stem
    ascii_stem = unicodedata.normalize("NFKD", stem).encode("ascii", "ignore").decode()
    slug = re.sub(r"[^a-z0-9]+", "_", ascii_stem.lower()).strip("_")[:40].strip("_") or "video"
    digest = hashlib.sha1(location.encode("utf-8")).hexdigest()[:8]
    return f"{slug}-{digest}"


@dataclass
class ScanResult:
    ready: list[tuple[str, Path]] = field(default_factory=list)  # (partition key, path)
    pending: dict[str, list[int]] = field(default_factory=dict)  # relpath -> [size, mtime_ns]
    skipped: list[tuple[Path, str]] = field(default_factory=list)  # (path, reason), newly seen only
    ignored: set[str] = field(default_factory=set)  # relpaths already reported as skipped


def skip_reason(name: str) -> str | None:
    """Why a file name is never a video to take (hidden, partial download, not a video)."""
    suffix = Path(name).suffix.lower()
    if name.startswith("."):
        return "hidden file"
    if suffix in PARTIAL_SUFFIXES:
        return f"partial download ({suffix}); will be picked up once renamed"
    if suffix not in VIDEO_SUFFIXES:
        return f"not a video file (suffix {suffix or 'none'!r})"
    return None


def folder_skip_reason(name: str) -> str | None:
    """Why a folder is not searched for videos: one named like a video (`d.mp4/`) is not
    a video, and what it holds is not taken either (hidden folders are passed over
    silently, linked ones are reported by the scan)."""
    suffix = Path(name).suffix.lower()
    if suffix in VIDEO_SUFFIXES:
        return (f"a folder named like a video ({suffix}), not a video: not searched; move the videos out of it "
                "(or rename it) to have them taken")
    return None


def consider(
    result: ScanResult,
    rel: str,
    where,
    known_keys: set[str],
    pending: dict,
    settle_s: float,
    now: float,
    stat: Callable[[], tuple[int, object, float] | None],
) -> None:
    """Decide about one file (or object) `rel` of a scan, the same way for folders and
    buckets. `where` is its full location (an absolute path or a URI): the partition key is
    made from it, and `ready`/`skipped` report it; `stat()` gives
    (size, fingerprint, modified time) or None when it is gone or busy. A file is ready
    once its (size, fingerprint) is the one seen by the previous scan and it has not been
    modified for `settle_s`."""
    reason = skip_reason(rel.rsplit("/", 1)[-1])
    # inside a folder named like a video: a bucket has no folders to skip, only names with slashes
    folder = next((part for part in rel.split("/")[:-1] if folder_skip_reason(part)), None)
    if reason is None and folder is not None:
        reason = f"inside {folder}/: " + folder_skip_reason(folder)
    if reason is None:
        key = partition_key_for(str(where))
        if key in known_keys:
            return
        facts = stat()
        if facts is None:
            return
        size, fingerprint, modified = facts
        seen = [size, fingerprint]
        if size != 0:
            result.ignored.discard(rel)
            if list(pending.get(rel, ())) == seen and now - modified >= settle_s:
                result.ready.append((key, where))
            else:
                result.pending[rel] = seen
            return
        reason = "empty file (0 bytes); will be picked up if it grows"
        result.pending[rel] = seen
    if rel not in result.ignored:
        result.skipped.append((where, reason))
        result.ignored.add(rel)
