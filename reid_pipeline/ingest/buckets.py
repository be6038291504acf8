"""The watched bucket: the inbox as an S3-compatible location (endpoint, bucket, prefix).

The same guarantees as the folder scan (`inbox`; the rules both share are `arrivals`), over
one object listing per tick (never a download): only new objects, a cursor of objects seen
but not settled, non-videos reported once with a reason, and an object is taken only once it
holds still: the same size and ETag on two scans in a row and a LastModified at least
`settle_s` old.

Objects with a multipart upload in progress on their key are never taken: a new object
is invisible to a listing until its upload completes anyway, but an object being
*overwritten* is still listed with its old size and ETag. Stores differ on a completed
multipart object's LastModified (completion time on moto; AWS documents the upload's
*start* as the creation date), so the age test alone may pass at once after a long upload;
the two-scan size+ETag test is what makes a just-completed object wait one more tick.

Partition keys are `arrivals.partition_key_for(<the object's s3:// URI>)`: a slug of the
object's name and a hash of its full location, so objects never share a key with each other
or with files of a watched folder.

Source URIs are `s3://<bucket>/<key>` with the key as stored (not percent-encoded, as the
AWS CLI writes them); parse them with `parse_s3_uri`, not `urllib.parse`.

Credentials and region come from boto3's usual chain (AWS_ACCESS_KEY_ID /
AWS_SECRET_ACCESS_KEY / AWS_PROFILE / instance roles...). The endpoint is an argument:
callers hand on `REID_S3_ENDPOINT_URL` from the settings (the resources, the CLI); boto3
itself also honours `AWS_ENDPOINT_URL_S3` / `AWS_ENDPOINT_URL` when none is given.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import PurePosixPath

from reid_pipeline.ingest.arrivals import ScanResult, consider


class BucketError(Exception):
    """The bucket cannot be listed (unreachable endpoint, no such bucket, no credentials)."""


def is_s3_uri(value: str) -> bool:
    return str(value).startswith("s3://")


def parse_s3_uri(uri: str) -> tuple[str, str]:
    """`s3://bucket/some/key.mp4` -> ("bucket", "some/key.mp4"). The key is taken verbatim
    (it may hold `#`, `?`, `%` or spaces, which urllib would mangle)."""
    if not is_s3_uri(uri):
        raise ValueError(f"not an s3:// URI: {uri!r}")
    bucket, _, key = uri[len("s3://"):].partition("/")
    if not bucket:
        raise ValueError(f"no bucket in {uri!r}")
    return bucket, key


@dataclass(frozen=True)
class BucketLocation:
    """A bucket and a prefix inside it (empty, or ending with `/`), at an optional endpoint."""

    bucket: str
    prefix: str = ""
    endpoint_url: str | None = None

    @classmethod
    def parse(cls, url: str, endpoint_url: str | None = None) -> BucketLocation:
        """`s3://bucket`, `s3://bucket/`, `s3://bucket/in` or `s3://bucket/in/` (the prefix
        is a folder: `in` means `in/`, so `in2/x.mp4` is not watched)."""
        bucket, prefix = parse_s3_uri(url.strip())
        prefix = prefix.strip("/")
        return cls(bucket, f"{prefix}/" if prefix else "", endpoint_url or None)

    @property
    def url(self) -> str:
        return f"s3://{self.bucket}/{self.prefix}"

    def uri_for(self, key: str) -> str:
        """The source URI of the object `key` (a full key, prefix included)."""
        return f"s3://{self.bucket}/{key}"


def make_client(endpoint_url: str | None = None, region_name: str | None = None):
    """An S3 client with short timeouts (a sensor tick must stay well under 60 s) and
    path-style addressing on custom endpoints (MinIO, moto and IP endpoints need it): the
    one `storage.S3Options.client` makes."""
    from reid_pipeline.storage import S3Options

    return S3Options(endpoint_url=endpoint_url, region_name=region_name).client()


def _in_progress_keys(client, location: BucketLocation) -> set[str]:
    """Keys with a multipart upload started and neither completed nor aborted."""
    from botocore.exceptions import ClientError

    keys: set[str] = set()
    try:
        pages = client.get_paginator("list_multipart_uploads").paginate(Bucket=location.bucket, Prefix=location.prefix)
        for page in pages:
            keys.update(upload["Key"] for upload in page.get("Uploads", ()))
    except ClientError as exc:
        # A few S3-compatible stores do not implement the call; the size+ETag+age test
        # still guards them.
        if exc.response.get("Error", {}).get("Code") not in ("NotImplemented", "XNotImplemented"):
            raise
    return keys


def scan_bucket(
    client,
    location: BucketLocation,
    known_keys: set[str],
    pending: dict[str, list] | None = None,
    ignored: set[str] | None = None,
    settle_s: float = 5.0,
    now: float | None = None,
) -> ScanResult:
    """List `location` once. An object is `ready` when its partition key is not known yet,
    no multipart upload is in progress on its key, its size and ETag are unchanged since the
    previous scan (`pending`: relative key -> [size, etag], JSON-safe for a cursor) and its
    LastModified is at least `settle_s` old. Non-video, hidden, partial and empty objects
    are reported once in `skipped`, as (source URI, reason).

    `ready` holds (partition key, source URI `s3://bucket/key`); `pending`, `ignored` and
    the keys of `pending` are relative to the prefix. Raises `BucketError` when the bucket
    cannot be listed."""
    from botocore.exceptions import BotoCoreError, ClientError

    now = time.time() if now is None else now
    pending = pending or {}
    result = ScanResult(ignored=set(ignored or ()))
    try:
        uploading = _in_progress_keys(client, location)
        pages = client.get_paginator("list_objects_v2").paginate(Bucket=location.bucket, Prefix=location.prefix)
        for page in pages:
            for obj in page.get("Contents", ()):
                _consider(obj, location, known_keys, pending, uploading, settle_s, now, result)
    except (BotoCoreError, ClientError) as exc:
        where = f" at {location.endpoint_url}" if location.endpoint_url else ""
        raise BucketError(f"cannot list {location.url}{where}: {exc}") from exc
    return result


def _consider(obj, location, known_keys, pending, uploading, settle_s, now, result: ScanResult) -> None:
    key = obj["Key"]
    rel = key[len(location.prefix):]
    if not rel or key.endswith("/"):
        return  # a "folder" placeholder made by consoles
    if any(part.startswith(".") for part in PurePosixPath(rel).parts[:-1]):
        return  # inside a hidden folder: the folder scan does not walk those either

    def stat():
        if key in uploading:
            return None  # being (over)written: not pending either, so it needs two scans after completion
        etag = str(obj.get("ETag", "")).strip('"')
        return int(obj.get("Size", 0)), etag, obj["LastModified"].timestamp()

    consider(result, rel, location.uri_for(key), known_keys, pending, settle_s, now, stat)
