"""Schema migrations: the numbered files of sql/, applied once each, in order."""

from __future__ import annotations

import re
from pathlib import Path

import psycopg

from reid_pipeline.store.connection import close_pools

_MIGRATION_LOCK = 0x5E1D  # pg advisory lock key: one migrator at a time across processes


def migrations(sql_dir: str | Path) -> list[tuple[str, Path]]:
    """Numbered `NNN_name.sql` files in order, in `sql_dir` (the settings' `sql_dir`: the
    checkout's sql/, or where a container installed them)."""
    sql_dir = Path(sql_dir)
    found = []
    for path in sorted(sql_dir.glob("*.sql")):
        match = re.match(r"^(\d+)_", path.name)
        if match:
            found.append((match.group(1), path))
    return found


def migrate(url: str, sql_dir: str | Path) -> list[str]:
    """Apply the migrations in `sql_dir` not yet applied, each in its own transaction, under
    an advisory lock so concurrent processes (webserver, daemon, runs) never race. Returns
    the applied versions; idempotent."""
    sql_dir = Path(sql_dir)
    if not migrations(sql_dir):
        raise RuntimeError(f"no migrations found in {sql_dir}; set REID_SQL_DIR to the project's sql/ folder")
    applied_now = []
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("SELECT pg_advisory_lock(%s)", (_MIGRATION_LOCK,))
        try:
            conn.execute(
                "CREATE TABLE IF NOT EXISTS schema_migrations ("
                " version text PRIMARY KEY, name text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())"
            )
            done = {row[0] for row in conn.execute("SELECT version FROM schema_migrations")}
            for version, path in migrations(sql_dir):
                if version in done:
                    continue
                with conn.transaction():
                    conn.execute(path.read_text())
                    conn.execute(
                        "INSERT INTO schema_migrations (version, name) VALUES (%s, %s)", (version, path.name)
                    )
                applied_now.append(version)
        finally:
            conn.execute("SELECT pg_advisory_unlock(%s)", (_MIGRATION_LOCK,))
    if applied_now:
        close_pools(url)  # pooled connections opened before the vector type existed
    return applied_now
