"""Dagster resources: thin, configurable handles on the core's objects.

Defaults come from `reid_pipeline.config.Settings` (environment variables with embedded
defaults), so a laptop needs no configuration and a deployment sets variables.
"""


import functools
import os
from pathlib import Path

import dagster as dg
from dagster_aws.s3 import S3Resource

from reid_pipeline.config import Settings
from reid_pipeline.database import resolve_url
from reid_pipeline.faces import FaceBackend, load_backend
from reid_pipeline.ingest.buckets import is_s3_uri
from reid_pipeline.ingest.sources import local_path
from reid_pipeline.storage import S3Options, StoragePath, asset_path, data_root, folder
from reid_pipeline.store import Store


@functools.cache
def _migrated_store(url: str, sql_dir: str) -> Store:
    store = Store(url)
    store.migrate(sql_dir)  # idempotent, under an advisory lock; once per process
    return store


class ReidDatabase(dg.ConfigurableResource):
    """Postgres + pgvector: `database_url` when set, else the embedded server in `pgdata`;
    its schema brought up to date from the migrations in `sql_dir`."""

    database_url: str | None = None
    pgdata: str
    sql_dir: str

    def store(self) -> Store:
        return _migrated_store(resolve_url(self.database_url, self.pgdata), self.sql_dir)


@functools.cache
def _backend(name: str, root: str | None, pack: str, upsample: int, max_side: int, cache: str | None) -> FaceBackend:
    return load_backend(name, insightface_root=root, insightface_pack=pack, upsample=upsample, max_side=max_side,
                        cache_dir=Path(cache) if cache else None)


class FaceModel(dg.ConfigurableResource):
    """The face backend: `yunet_sface`, `dlib`, `insightface` or `auto` (insightface when its
    pack is there, else YuNet + SFace)."""

    backend: str = "auto"
    insightface_root: str | None = None
    insightface_pack: str = "buffalo_l"
    dlib_upsample: int = 1
    max_side: int = 1280
    model_cache: str | None = None  # models derived from the installed ones (dlib's as ONNX), made once

    def get(self) -> FaceBackend:
        return _backend(self.backend, self.insightface_root, self.insightface_pack, self.dlib_upsample, self.max_side,
                        self.model_cache)


@functools.cache
def _s3_client(options: S3Options, aws_env: tuple):
    return options.client()


class ObjectStore(S3Resource):
    """dagster-aws's `S3Resource` (endpoint, region, profile, keys): `get_client()` gives
    the core a boto3 client (short timeouts, path-style addressing on a custom endpoint) and
    `options()` the same settings for the fsspec paths of a data root in a bucket. Unset
    keys leave credentials to boto's chain (AWS_* variables, profile, instance role).
    `video_cache`: where videos in a bucket are copied to be decoded."""

    video_cache: str

    def options(self) -> S3Options:
        return S3Options(
            endpoint_url=self.endpoint_url, region_name=self.region_name, profile_name=self.profile_name,
            access_key_id=self.aws_access_key_id, secret_access_key=self.aws_secret_access_key,
            session_token=self.aws_session_token, max_attempts=self.max_attempts, use_ssl=self.use_ssl,
            verify=self.verify,
        )

    def get_client(self):
        # one client per process and settings, not one per run: building one parses botocore's
        # service model (about 0.2 s, and Dagster builds this resource for every run, even with
        # a local data root); boto3 clients are thread-safe. The AWS_* variables are part of
        # the key: without keys in the settings, boto's chain reads its credentials from them.
        aws_env = tuple(sorted((k, v) for k, v in os.environ.items() if k.startswith("AWS_")))
        return _s3_client(self.options(), aws_env)

    def get_object_to_set_on_execution_context(self) -> "ObjectStore":
        # S3Resource builds its client here, when a run starts, for every run that needs the
        # resource: about 0.25 s, and boto's credential chain down to the instance-metadata
        # endpoint, which on a laptop off AWS can wait for its timeouts. A local data root and
        # local videos never need a client, so it is built on first use (`get_client`).
        return self

    def local_path(self, source_uri: str) -> Path:
        """The local file of a registered video: itself, or a bucket object's cached copy
        fetched with this resource's client (`reid_pipeline.ingest.sources.local_path`)."""
        if not is_s3_uri(source_uri):
            return local_path(source_uri)
        return local_path(source_uri, self.video_cache, self.get_client())


class DataStorage(dg.ConfigurableResource):
    """The data root where assets write their parquet files and pictures: a folder, or
    `s3://bucket/prefix` reached through the `s3` resource (`reid_pipeline.storage`)."""

    data_root: str
    s3: ObjectStore
    # where `reid gallery` answers: face pictures are shown there, behind its secret, never
    # in Dagster's metadata (README, "What the Dagster UI shows"); metadata links to it
    gallery_url: str = "http://127.0.0.1:8765"

    @property
    def root(self) -> StoragePath:
        return data_root(self.data_root, self.s3.options())

    def path(self, asset: str, partition_key: str, suffix: str = ".parquet") -> StoragePath:
        return asset_path(self.root, asset, partition_key, suffix)

    def folder(self, *parts: str) -> StoragePath:
        return folder(self.root, *parts)

    def gallery_page(self, path: str) -> dg.MetadataValue:
        """A link to a page of the gallery app (`/videos/<key>`, `/identity/<id>`, `/`): the
        faces that metadata never holds. The link carries no secret: it opens only in the
        browser of the person who opened the URL `reid gallery` printed."""
        from urllib.parse import quote

        return dg.MetadataValue.url(self.gallery_url.rstrip("/") + quote(path))

    def video_page(self, partition_key: str) -> dg.MetadataValue:
        """A link to the gallery's page of one video (`/videos/<key>`): its live status and
        its faces, sequences and identities."""
        return self.gallery_page(f"/videos/{partition_key}")


class Inbox(dg.ConfigurableResource):
    """The watched folder, or an S3-compatible bucket location (`s3://bucket/prefix`, with
    its endpoint), and how long a file must stay unchanged before it is taken."""

    folder: str
    bucket: str | None = None
    endpoint_url: str | None = None
    settle_seconds: float = 5.0

    @property
    def source(self) -> str:
        return self.bucket or self.folder


class Archive(dg.ConfigurableResource):
    """An existing archive to register (every video becomes a partition; nothing is
    launched): a folder or `s3://bucket/prefix` (with its endpoint) that the `archive_sensor`
    watches once turned on; the `register_archive` job takes any location as its config."""

    source: str | None = None
    endpoint_url: str | None = None
    settle_seconds: float = 5.0


def build_resources(settings: Settings | None = None) -> dict:
    """Resources from `settings`, or from the environment (`Settings()`). From the
    environment, the database URL goes in as `dg.EnvVar`: Dagster resolves it in the run,
    and its UI shows the variable's name, never the value (a URL may hold a password)."""
    s = settings or Settings()
    url = dg.EnvVar("REID_DATABASE_URL") if settings is None and s.database_url else s.database_url
    s3 = ObjectStore(endpoint_url=s.s3_endpoint_url, video_cache=str(s.video_cache))
    return {
        "database": ReidDatabase(database_url=url, pgdata=str(s.pgdata), sql_dir=str(s.sql_dir)),
        "face_model": FaceModel(
            backend=s.face_backend, insightface_root=s.insightface_root, insightface_pack=s.insightface_pack,
            model_cache=str(s.model_cache),
        ),
        "s3": s3,
        "storage": DataStorage(data_root=str(s.data_root), s3=s3, gallery_url=s.gallery_url),
        "archive": Archive(source=s.archive, endpoint_url=s.s3_endpoint_url, settle_seconds=s.settle_seconds),
        "inbox": Inbox(
            folder=str(s.inbox), bucket=s.inbox_bucket, endpoint_url=s.s3_endpoint_url, settle_seconds=s.settle_seconds
        ),
    }
