"""Settings: embedded defaults that work on a laptop, each overridable by an environment variable.

| setting | variable | default |
|---|---|---|
| home (database, Dagster home, data) | `REID_HOME` | `<project>/.reid` |
| data root (parquet, previews, reports, gallery): a folder or `s3://bucket/prefix` | `REID_DATA_ROOT` | `$REID_HOME/data` |
| watched folder | `REID_INBOX` | `<project>/inbox` |
| watched bucket instead (`s3://bucket/prefix`) | `REID_INBOX_BUCKET` | unset |
| S3 endpoint of the buckets (watched and data root; credentials: boto's chain, `AWS_*`) | `REID_S3_ENDPOINT_URL` | unset: AWS |
| an archive folder (or `s3://bucket/prefix`) that the `archive_sensor` registers, when turned on | `REID_ARCHIVE` | unset |
| external Postgres URL | `REID_DATABASE_URL` | unset: embedded server in `$REID_HOME/pgdata` |
| face backend (`auto`, `yunet_sface`, `dlib`, `insightface`) | `REID_FACE_BACKEND` | `auto`: insightface pack, else YuNet + SFace |
| insightface packs folder / pack | `REID_INSIGHTFACE_ROOT` / `REID_INSIGHTFACE_PACK` | `~/.insightface/models` / `buffalo_l` |
| analysis rate | `REID_SAMPLE_FPS` | `4` frames per second (`0` = every frame) |
| threads detecting faces in one video | `REID_DETECT_THREADS` | YuNet 1, dlib 2 (at most the CPUs) |
| whole-frame face search every N s (between: near known faces; `0`: every frame) | `REID_FULL_DETECT_S` | YuNet 0, dlib 1 |
| a file is taken once unchanged for | `REID_SETTLE_SECONDS` | `5` seconds |
| inbox sensor interval | `REID_SENSOR_INTERVAL` | `10` seconds |
| videos per run of a backfill (model loaded once per run) | `REID_BACKFILL_BATCH` | `25` |
| the SQL migrations | `REID_SQL_DIR` | `<project>/sql` |
| the gallery app's address, linked from Dagster's metadata (`reid gallery --port`) | `REID_GALLERY_URL` | `http://127.0.0.1:8765` |
| file creation mask for face data (chips, previews, reports, gallery) | `REID_UMASK` | `077` (owner only) |
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

PROJECT_ROOT = Path(__file__).resolve().parent.parent


class Settings(BaseSettings):
    """Every setting of the project, read from `REID_*` variables (typed: a bad value is an
    error that names the variable). The one place that reads the environment for them; the
    CLI, `resources.build_resources` and the code location (`definitions.py`,
    `assets/settings.py`) read it and hand the values on; the core never does."""

    model_config = SettingsConfigDict(env_prefix="REID_", env_ignore_empty=True, extra="ignore")

    home: Path = PROJECT_ROOT / ".reid"
    data_root: str | None = None  # a folder or s3://bucket/prefix; default: <home>/data
    inbox: Path = PROJECT_ROOT / "inbox"
    inbox_bucket: str | None = None
    s3_endpoint_url: str | None = None
    archive: str | None = None
    database_url: str | None = None
    face_backend: str = "auto"
    insightface_root: str | None = None
    insightface_pack: str = "buffalo_l"
    sample_fps: float = 4.0
    detect_threads: int | None = Field(None, ge=1)  # None: the backend's own (`detect_threads`)
    full_detect_s: float | None = Field(None, ge=0)  # None: the backend's own (`full_detect_s`)
    settle_seconds: float = 5.0
    sensor_interval: int = 10
    # a backfill runs this many videos per run: Dagster's start-up (about 5 s here) is paid
    # once per run, not per video (BENCHMARKS.md, "Backfill overhead")
    backfill_batch: int = Field(25, ge=1)
    gallery_url: str = "http://127.0.0.1:8765"  # where `reid gallery` answers (Dagster metadata links there)
    sql_dir: Path = PROJECT_ROOT / "sql"  # the migrations (a container installs the package elsewhere)
    # umask of every process that writes face data: 077 = files for their owner only; a
    # shared install may widen it (027: the owner's group may read)
    umask: str = Field("077", pattern=r"^0?[0-7]{3}$")
    dagster_home_dir: Path | None = Field(None, validation_alias="DAGSTER_HOME")

    @model_validator(mode="after")
    def _derived(self) -> Settings:
        if self.data_root is None:
            self.data_root = str(self.home / "data")
        return self

    @staticmethod
    def explain(error: Exception) -> str:
        """A settings error in the user's words: the variable, the value, what is wrong."""
        lines = []
        for e in getattr(error, "errors", lambda: [])():
            field = str(e["loc"][0]) if e.get("loc") else "?"
            name = "DAGSTER_HOME" if field in ("dagster_home_dir", "DAGSTER_HOME") else f"REID_{field.upper()}"
            lines.append(f"{name}={e.get('input')!r}: {e['msg']}")
        return "; ".join(lines) or str(error)

    def s3_options(self):
        """How to reach the S3 endpoint (`reid_pipeline.storage.S3Options`)."""
        from reid_pipeline.storage import S3Options

        return S3Options(endpoint_url=self.s3_endpoint_url)

    def data_path(self):
        """The data root as a path: a `Path`, or a `UPath` that carries the S3 options."""
        from reid_pipeline.storage import data_root

        return data_root(self.data_root, self.s3_options())

    @property
    def data_is_local(self) -> bool:
        from reid_pipeline.storage import is_remote_uri

        return not is_remote_uri(self.data_root)

    @property
    def video_cache(self) -> Path:
        """Where videos in a bucket are copied to be decoded (OpenCV reads files)."""
        return self.home / "cache" / "s3"

    @property
    def model_cache(self) -> Path:
        """Models derived once from the installed ones (dlib's descriptor as ONNX, plain fp32 YuNet and SFace graphs)."""
        return self.home / "cache" / "models"

    @property
    def pgdata(self) -> Path:
        return self.home / "pgdata"

    @property
    def dagster_home(self) -> Path:
        return self.dagster_home_dir or self.home / "dagster_home"
