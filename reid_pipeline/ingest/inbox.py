"""The watched folder: which files are new, settled videos (the rules in `arrivals`), and
the scan of a folder or a bucket (`scan_source`) that the sensors and the CLI call.

Pure functions over the file system and a small cursor, so the Dagster sensor stays thin
and a tick stays fast: one directory walk and a stat per file, no hashing, no decoding.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from reid_pipeline.ingest.arrivals import ScanResult, consider, folder_skip_reason
from reid_pipeline.ingest.buckets import BucketLocation, is_s3_uri, make_client, scan_bucket
from reid_pipeline.ingest.sources import uri_for


def scan(
    folder: str | os.PathLike,
    known_keys: set[str],
    pending: dict[str, list[int]] | None = None,
    ignored: set[str] | None = None,
    settle_s: float = 5.0,
    now: float | None = None,
) -> ScanResult:
    """Walk `folder` once. A video is `ready` when its partition key is not known yet, its
    size and mtime are unchanged since the previous scan (`pending`) and it has not been
    modified for `settle_s` seconds: a file still being written never qualifies. Non-video,
    hidden, partial and empty files are reported once in `skipped`, with the reason; so are
    symbolic links, which are never followed (a link could point anywhere on the machine),
    and folders named like a video (`d.mp4/`), which are not searched. Other folders are
    searched; hidden ones are not."""
    folder = Path(folder).resolve()
    now = time.time() if now is None else now
    result = ScanResult(ignored=set(ignored or ()))

    def stat_of(path: Path):
        def stat():
            try:
                st = path.stat()
            except FileNotFoundError:
                return None  # removed between listing and stat
            return st.st_size, st.st_mtime_ns, st.st_mtime_ns / 1e9

        return stat

    for dirpath, dirnames, filenames in os.walk(folder):  # os.walk never descends into linked folders
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        linked = [d for d in dirnames if (Path(dirpath) / d).is_symlink()]
        for name in [d for d in dirnames if d not in linked and folder_skip_reason(d)]:
            dirnames.remove(name)
            rel = (Path(dirpath) / name).relative_to(folder).as_posix()
            if rel not in result.ignored:
                result.skipped.append((Path(dirpath) / name, folder_skip_reason(name)))
                result.ignored.add(rel)
        for name in sorted(filenames) + linked:
            path = Path(dirpath) / name
            rel = path.relative_to(folder).as_posix()
            if path.is_symlink():
                if rel not in result.ignored:
                    result.skipped.append((path, "a symbolic link, not followed: copy or move the video itself into the inbox"))
                    result.ignored.add(rel)
                continue
            consider(result, rel, path, known_keys, pending or {}, settle_s, now, stat_of(path))
    return result


def scan_source(
    source: str,
    known_keys: set[str],
    pending: dict | None = None,
    ignored: set[str] | None = None,
    settle_s: float = 5.0,
    endpoint_url: str | None = None,
) -> ScanResult:
    """Scan a folder or an `s3://bucket/prefix` location; `ready` holds (key, source URI)."""
    if is_s3_uri(source):
        location = BucketLocation.parse(source, endpoint_url)
        return scan_bucket(make_client(location.endpoint_url), location, known_keys, pending, ignored, settle_s)
    result = scan(source, known_keys, pending, ignored, settle_s)
    result.ready = [(key, uri_for(path)) for key, path in result.ready]
    return result
