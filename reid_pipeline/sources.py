"""Where a registered video's bytes are: source URIs and the local path to read them from."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import unquote, urlparse

from reid_pipeline.video import VideoError


def uri_for(path: str | Path) -> str:
    return Path(path).resolve().as_uri()


def local_path(source_uri: str) -> Path:
    """The local file behind `source_uri` (file:// URIs; bucket objects arrive in a later issue)."""
    parsed = urlparse(source_uri)
    if parsed.scheme != "file":
        raise VideoError(f"unsupported source {source_uri!r} (only file:// for now)")
    path = Path(unquote(parsed.path))
    if not path.exists():
        raise VideoError(f"{path}: file not found (moved or deleted since it was registered)")
    return path
