"""The data root and every file under it: a local folder, or an object-store prefix.

`REID_DATA_ROOT` is a folder (the default, `$REID_HOME/data`) or `s3://bucket/prefix`, for
deployments whose runs share no disk. Every path under it comes from here: a
`pathlib.Path` for a folder, a `upath.UPath` (universal-pathlib over fsspec: s3fs for S3)
for a bucket. Both have the same path methods (`/`, `exists`, `read_bytes`, `write_bytes`,
`write_text`, `glob`), so callers join and test them alike; what differs is kept here:

- Writes are atomic. A local file is written to a temp file beside it and renamed; an
  object is written to a local temp file and uploaded at the end (one PUT, or a multipart
  upload, which appears only once complete), so a reader never sees half a file.
- Parquet is read with pyarrow: local files directly, objects through the fsspec file with
  ranged GETs (the footer, then only the row groups and columns asked for), so a chip read
  from a long video's detections fetches one row group, not the file.
- Local folders are made as files are written into them; a bucket has no folders.

The S3 endpoint and credentials come in as `S3Options` from the caller (the Dagster
resource, or the CLI from the settings); this module never reads the environment. Options
without keys leave credentials to boto's usual chain (AWS_* variables, a profile, an
instance or pod role), which s3fs and boto3 both follow.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import polars as pl
import pyarrow.parquet as pq
from upath import UPath

ROW_GROUP = 512  # rows per parquet row group: chips are read a row group at a time

StoragePath = Path | UPath


@dataclass(frozen=True)
class S3Options:
    """Where and how to reach an S3-compatible store (AWS, MinIO, Ceph, R2, moto...)."""

    endpoint_url: str | None = None  # None: AWS itself
    region_name: str | None = None
    profile_name: str | None = None
    access_key_id: str | None = None  # all three None: boto's credential chain
    secret_access_key: str | None = None
    session_token: str | None = None
    max_attempts: int = 3
    use_ssl: bool = True
    verify: bool | str | None = None  # False: no certificate check; a path: a CA bundle

    def _config(self) -> dict:
        # short timeouts (a sensor tick must stay well under 60 s) and path-style
        # addressing on custom endpoints (MinIO, moto and IP endpoints need it)
        config: dict = {"connect_timeout": 5, "read_timeout": 30, "retries": {"max_attempts": self.max_attempts, "mode": "standard"}}
        if self.endpoint_url:
            config["s3"] = {"addressing_style": "path"}
        return config

    def fsspec(self) -> dict:
        """Storage options for s3fs (and so for `UPath("s3://...", **options)`)."""
        options: dict = {"config_kwargs": self._config(), "use_listings_cache": False}
        if self.endpoint_url:
            options["endpoint_url"] = self.endpoint_url
        client = {"region_name": self.region_name, "verify": self.verify}
        if any(v is not None for v in client.values()):
            options["client_kwargs"] = {k: v for k, v in client.items() if v is not None}
        if not self.use_ssl:
            options["use_ssl"] = False
        if self.profile_name:
            options["profile"] = self.profile_name
        for name, value in (("key", self.access_key_id), ("secret", self.secret_access_key), ("token", self.session_token)):
            if value:
                options[name] = value
        return options

    def client(self):
        """A boto3 S3 client with the same endpoint, credentials and timeouts."""
        import boto3
        from botocore.config import Config

        session = boto3.session.Session(profile_name=self.profile_name)
        return session.client(
            "s3", endpoint_url=self.endpoint_url, region_name=self.region_name, config=Config(**self._config()),
            use_ssl=self.use_ssl, verify=self.verify,
            aws_access_key_id=self.access_key_id, aws_secret_access_key=self.secret_access_key,
            aws_session_token=self.session_token,
        )


def is_remote_uri(value: str | os.PathLike) -> bool:
    """Whether `value` names an object-store location (`s3://...`, `gs://...`), not a folder."""
    text = str(value)
    return "://" in text and not text.startswith("file://")


def data_root(root: str | os.PathLike, s3: S3Options | None = None) -> StoragePath:
    """The data root (or any location) as a path: a `Path` for a folder (or `file://`
    URI), a `UPath` that carries its storage options for `s3://bucket/prefix` (and other
    fsspec URLs). A path already made is returned as it is."""
    if isinstance(root, UPath) and not is_local(root):
        return root
    text = os.fspath(root)
    if text.startswith("file://"):
        return Path(UPath(text).path)
    if is_remote_uri(text):
        protocol = text.split("://", 1)[0]
        options = (s3 or S3Options()).fsspec() if protocol in ("s3", "s3a") else {}
        return UPath(text.rstrip("/"), **options)
    return Path(text)


def is_local(path: StoragePath) -> bool:
    return isinstance(path, Path)


def asset_path(root: str | os.PathLike, asset: str, partition_key: str, suffix: str = ".parquet") -> StoragePath:
    """One file per asset and partition under the data root (its local folder made)."""
    path = data_root(root) / asset / f"{partition_key}{suffix}"
    if is_local(path):
        path.parent.mkdir(parents=True, exist_ok=True)
    return path


def folder(root: str | os.PathLike, *parts: str) -> StoragePath:
    """A folder under the data root (made when local; a bucket has no folders)."""
    path = data_root(root).joinpath(*parts)
    if is_local(path):
        path.mkdir(parents=True, exist_ok=True)
    return path


class Staged:
    """A local file through which `path` is written atomically. Local: a temp file beside
    it, renamed over it by `commit`. Remote: a temp file on this machine, uploaded by
    `commit` (an object appears whole or not at all). `abort` leaves `path` as it was."""

    def __init__(self, path: StoragePath):
        self.path = path = data_root(path)
        if is_local(path):
            path.parent.mkdir(parents=True, exist_ok=True)
            self.local = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")
        else:
            fd, name = tempfile.mkstemp(prefix="reid-upload-", suffix=path.suffix)
            os.close(fd)
            self.local = Path(name)

    def commit(self) -> StoragePath:
        try:
            if is_local(self.path):
                os.replace(self.local, self.path)
            else:
                self.path.fs.put_file(str(self.local), self.path.path)
        finally:
            self.abort()
        return self.path

    def abort(self) -> None:
        self.local.unlink(missing_ok=True)

    def __enter__(self) -> Path:
        return self.local

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.commit()
        else:
            self.abort()


def write_parquet(df: pl.DataFrame, path: StoragePath, row_group_size: int = ROW_GROUP) -> StoragePath:
    """Write `df` to `path` atomically, in row groups of `row_group_size` rows."""
    with Staged(path) as tmp:
        df.write_parquet(tmp, row_group_size=row_group_size)
    return path


def write_bytes(path: StoragePath, data: bytes) -> StoragePath:
    """Write a file atomically (pictures, pages)."""
    with Staged(path) as tmp:
        tmp.write_bytes(data)
    return path


def write_text(path: StoragePath, text: str) -> StoragePath:
    return write_bytes(path, text.encode("utf-8"))


@contextmanager
def open_parquet(path: StoragePath) -> Iterator[pq.ParquetFile]:
    """A parquet file to read row groups and columns from: a local file directly, an object
    through ranged reads (no read-ahead: each read is one GET of what pyarrow asks for)."""
    path = data_root(path)
    if is_local(path):
        parquet = pq.ParquetFile(str(path))
        try:
            yield parquet
        finally:
            parquet.close()
        return
    with path.fs.open(path.path, "rb", cache_type="none") as f:
        parquet = pq.ParquetFile(f)
        yield parquet


def read_parquet(path: StoragePath, columns: list[str] | None = None) -> pl.DataFrame:
    """A parquet file (only `columns` when given) as a polars frame."""
    path = data_root(path)
    if is_local(path):
        return pl.read_parquet(path, columns=columns)
    with open_parquet(path) as parquet:
        return pl.from_arrow(parquet.read(columns=columns))


def stamp(path: StoragePath) -> object | None:
    """What changes when the file is replaced (None when there is none): the modification
    time of a local file, the ETag of an object."""
    path = data_root(path)
    try:
        if is_local(path):
            return path.stat().st_mtime_ns
        info = path.fs.info(path.path)
        return info.get("ETag") or info.get("LastModified") or info.get("size")
    except FileNotFoundError:
        return None


def remove(path: StoragePath) -> bool:
    """Delete a file or a whole folder (every object under a prefix); False when absent."""
    path = data_root(path)
    if is_local(path):
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        elif path.exists() or path.is_symlink():
            path.unlink()
        else:
            return False
        return True
    if not path.exists():
        return False
    path.fs.rm(path.path, recursive=True)
    return True


def mkdirs(path: StoragePath) -> StoragePath:
    """Make a local folder (a no-op in a bucket, which has no folders)."""
    if is_local(path):
        path.mkdir(parents=True, exist_ok=True)
    return path
