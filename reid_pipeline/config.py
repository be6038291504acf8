"""Settings: embedded defaults that work on a laptop, each overridable by an environment variable.

| setting | variable | default |
|---|---|---|
| home (database, Dagster home, data) | `REID_HOME` | `<project>/.reid` |
| data root (parquet, previews) | `REID_DATA_ROOT` | `$REID_HOME/data` |
| watched folder | `REID_INBOX` | `<project>/inbox` |
| watched bucket instead (`s3://bucket/prefix`) and its endpoint | `REID_INBOX_BUCKET`, `REID_S3_ENDPOINT_URL` | unset |
| external Postgres URL | `REID_DATABASE_URL` | unset: embedded server in `$REID_HOME/pgdata` |
| face backend | `REID_FACE_BACKEND` | `auto` (insightface when its pack is present, else dlib) |
| insightface packs folder / pack | `REID_INSIGHTFACE_ROOT` / `REID_INSIGHTFACE_PACK` | `~/.insightface/models` / `buffalo_l` |
| analysis rate | `REID_SAMPLE_FPS` | `4` frames per second (`0` = every frame) |
| threads detecting faces in one video | `REID_DETECT_THREADS` | `2` (at most the CPU count) |
| a file is taken once unchanged for | `REID_SETTLE_SECONDS` | `5` seconds |
| inbox sensor interval | `REID_SENSOR_INTERVAL` | `10` seconds |
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent


def _env(name: str, default: str | None = None) -> str | None:
    value = os.environ.get(name)
    return value if value not in (None, "") else default


@dataclass
class Settings:
    home: Path = field(default_factory=lambda: Path(_env("REID_HOME", str(PROJECT_ROOT / ".reid"))))
    data_root: Path | None = None
    inbox: Path = field(default_factory=lambda: Path(_env("REID_INBOX", str(PROJECT_ROOT / "inbox"))))
    inbox_bucket: str | None = field(default_factory=lambda: _env("REID_INBOX_BUCKET"))
    s3_endpoint_url: str | None = field(default_factory=lambda: _env("REID_S3_ENDPOINT_URL"))
    database_url: str | None = field(default_factory=lambda: _env("REID_DATABASE_URL"))
    face_backend: str = field(default_factory=lambda: _env("REID_FACE_BACKEND", "auto"))
    insightface_root: str | None = field(default_factory=lambda: _env("REID_INSIGHTFACE_ROOT"))
    insightface_pack: str = field(default_factory=lambda: _env("REID_INSIGHTFACE_PACK", "buffalo_l"))
    sample_fps: float = field(default_factory=lambda: float(_env("REID_SAMPLE_FPS", "4")))
    detect_threads: int = field(
        default_factory=lambda: int(_env("REID_DETECT_THREADS", str(min(2, os.cpu_count() or 1))))
    )
    settle_seconds: float = field(default_factory=lambda: float(_env("REID_SETTLE_SECONDS", "5")))
    sensor_interval: int = field(default_factory=lambda: int(_env("REID_SENSOR_INTERVAL", "10")))

    def __post_init__(self) -> None:
        self.home = Path(self.home)
        if self.data_root is None:
            self.data_root = Path(_env("REID_DATA_ROOT", str(self.home / "data")))

    @property
    def pgdata(self) -> Path:
        return self.home / "pgdata"

    @property
    def dagster_home(self) -> Path:
        return Path(_env("DAGSTER_HOME", str(self.home / "dagster_home")))
