"""Where a registered video's bytes are: source URIs and the local path to read them from.

- `file://...`: the file itself.
- `s3://bucket/key`: the object, downloaded once into a cache folder (`<cache_dir>/<bucket>/<key>`;
  the settings' `video_cache`, `<REID_HOME>/cache/s3`) and reused while its size and
  LastModified match the object's. The caller hands in the cache folder and the S3 client
  (the `s3` resource's, or one for `REID_S3_ENDPOINT_URL`).
"""

from __future__ import annotations

import hashlib
import os
import uuid
from pathlib import Path
from urllib.parse import unquote, urlparse

from reid_pipeline.ingest.video import VideoError


def uri_for(path: str | Path) -> str:
    return Path(path).resolve().as_uri()


def local_path(source_uri: str, cache_dir: str | os.PathLike | None = None, client=None) -> Path:
    """The local file behind `source_uri`: file:// URIs as they are, s3:// objects through
    the cache in `cache_dir`, fetched with `client` (a boto3 S3 client; both needed for an
    s3:// URI). Raises `VideoError` saying why when the file or object is missing or cannot
    be reached."""
    if source_uri.startswith("s3://"):
        if cache_dir is None or client is None:
            raise ValueError(f"{source_uri}: a bucket object needs a cache folder and an S3 client")
        return _cached_object(source_uri, Path(cache_dir), client)
    parsed = urlparse(source_uri)
    if parsed.scheme != "file":
        raise VideoError(f"unsupported source {source_uri!r} (file:// and s3:// are supported)")
    path = Path(unquote(parsed.path))
    if not path.exists():
        raise VideoError(f"{path}: file not found (moved or deleted since it was registered)")
    return path


def file_name(source_uri: str) -> str:
    """The video's file name as the user knows it (decoded), from its file:// or s3:// URI."""
    return unquote(source_uri.rstrip("/").rsplit("/", 1)[-1])


def source_file(source_uri: str) -> Path | None:
    """The user's own file behind a file:// URI (None for a bucket object)."""
    parsed = urlparse(source_uri)
    return Path(unquote(parsed.path)) if parsed.scheme == "file" else None


def cached_copy(source_uri: str, cache_dir: str | os.PathLike | None) -> Path | None:
    """Where the cache in `cache_dir` keeps a bucket object's copy (None for a file:// URI,
    or when there is no cache)."""
    if not source_uri.startswith("s3://") or cache_dir is None:
        return None
    from reid_pipeline.ingest.buckets import parse_s3_uri

    try:
        bucket, key = parse_s3_uri(source_uri)
    except ValueError:
        return None
    return _cache_file(Path(cache_dir), bucket, key) if key else None


def _cache_file(cache_dir: Path, bucket: str, key: str) -> Path:
    parts = key.split("/")
    if any(part in ("", ".", "..") for part in parts):
        # a key that would not map to a path inside the cache: a flat, hashed name instead
        digest = hashlib.sha1(key.encode("utf-8")).hexdigest()[:16]
        return cache_dir / bucket / "_keys" / f"{digest}{Path(parts[-1]).suffix}"
    return cache_dir.joinpath(bucket, *parts)


def _cached_object(source_uri: str, cache_dir: Path, client) -> Path:
    from botocore.exceptions import BotoCoreError, ClientError

    from reid_pipeline.ingest.buckets import parse_s3_uri

    try:
        bucket, key = parse_s3_uri(source_uri)
    except ValueError as exc:
        raise VideoError(str(exc)) from exc
    if not key:
        raise VideoError(f"{source_uri}: no object key in the URI")
    dest = cached_copy(source_uri, cache_dir)
    where = f" at {client.meta.endpoint_url}"
    try:
        head = client.head_object(Bucket=bucket, Key=key)
        size, modified = int(head["ContentLength"]), head["LastModified"].timestamp()
        try:
            st = dest.stat()
            if st.st_size == size and abs(st.st_mtime - modified) < 1e-3:
                return dest
        except FileNotFoundError:
            pass
        dest.parent.mkdir(parents=True, exist_ok=True)
        # a private temp name in the same folder, then an atomic rename: a reader never sees
        # half a file, and two processes fetching the same object do not collide
        tmp = dest.with_name(f".{dest.name}.{uuid.uuid4().hex[:8]}.part")
        try:
            client.download_file(bucket, key, str(tmp))
            if tmp.stat().st_size != size:
                raise VideoError(f"{source_uri}: changed while downloading; try again")
            os.utime(tmp, (modified, modified))
            os.replace(tmp, dest)
        finally:
            tmp.unlink(missing_ok=True)
        return dest
    except ClientError as exc:
        error = exc.response.get("Error", {})
        code = str(error.get("Code", ""))
        if code in ("404", "NoSuchKey", "NotFound"):
            raise VideoError(f"{source_uri}: object not found (moved or deleted since it was registered, or no such bucket)") from exc
        if code == "NoSuchBucket":
            raise VideoError(f"{source_uri}: bucket {bucket!r} does not exist{where}") from exc
        if code in ("403", "AccessDenied", "Forbidden", "InvalidAccessKeyId", "SignatureDoesNotMatch"):
            raise VideoError(f"{source_uri}: access denied{where} (check the AWS credentials)") from exc
        raise VideoError(f"{source_uri}: cannot fetch{where}: {exc}") from exc
    except BotoCoreError as exc:  # endpoint unreachable, no credentials, timeouts
        raise VideoError(f"{source_uri}: cannot reach the object store{where}: {exc}") from exc
    except OSError as exc:
        raise VideoError(f"{source_uri}: cannot write the local copy {dest}: {exc}") from exc
