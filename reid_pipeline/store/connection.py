"""Connections: one pool per process and database (psycopg_pool), the vector type on every
connection, transaction-scoped advisory locks, and the base every area of `Store` builds on.

Opening a connection costs 8.2 ms against 0.65 ms for a query on an open one (BENCHMARKS.md,
"Scale"), so a `Store` call borrows a pooled connection for its own work and gives it back.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import threading
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import psycopg
from pgvector.psycopg import register_vector
from psycopg.rows import dict_row
from psycopg_pool import ConnectionPool


def as_array(value) -> np.ndarray:
    """pgvector's loader gives `Vector` objects (or numpy arrays): always a float32 array."""
    return np.asarray(value.to_numpy() if hasattr(value, "to_numpy") else value, dtype=np.float32)


def connect(url: str, **kwargs) -> psycopg.Connection:
    conn = psycopg.connect(url, **kwargs)
    try:
        register_vector(conn)
    except psycopg.ProgrammingError:
        # the extension does not exist yet (first connection, before migrations)
        pass
    return conn


_POOLS: dict[tuple[int, str], ConnectionPool] = {}
_POOLS_LOCK = threading.Lock()


def _prepare(conn: psycopg.Connection) -> None:
    """A new pooled connection: dict rows and the vector type (once the extension exists)."""
    conn.row_factory = dict_row
    try:
        register_vector(conn)
    except psycopg.ProgrammingError:
        conn.rollback()  # before the first migration; the pool is renewed after migrating
    else:
        conn.commit()  # the pool wants connections back idle


def pool(url: str) -> ConnectionPool:
    """This process's pool for `url` (a forked child gets its own)."""
    key = (os.getpid(), url)
    with _POOLS_LOCK:
        found = _POOLS.get(key)
        if found is None or found.closed:
            # check: a connection the server dropped (a restarted Postgres) is replaced, not handed out
            # timeout: a database that is down fails a step in seconds (then it is retried), not 30 s
            found = _POOLS[key] = ConnectionPool(url, min_size=1, max_size=8, configure=_prepare, timeout=10,
                                                 check=ConnectionPool.check_connection, open=True, name="reid")
        return found


def close_pools(url: str | None = None) -> None:
    """Close this process's pools (of `url`, or all): at exit, and after migrating."""
    with _POOLS_LOCK:
        for key in [k for k in _POOLS if k[0] == os.getpid() and url in (None, k[1])]:
            _POOLS.pop(key).close()


atexit.register(close_pools)


def lock(conn: psycopg.Connection, *names: str) -> None:
    """A transaction-scoped advisory lock named by `names`: concurrent runs of different
    videos that write the same archive-wide rows (a model's sequences, matches and
    identities; one content hash) take turns instead of racing."""
    conn.execute("SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))", (":".join(("reid",) + names),))


@dataclass
class StoreBase:
    """A database URL and pooled connections of this process, each held for one call: safe
    from Dagster's run processes, threads and the sensor alike. The areas of `Store`
    (videos, faces, sequences, matches, identities) are built on it."""

    url: str

    @contextlib.contextmanager
    def connection(self):
        """A pooled connection (dict rows, vector type registered) for a `with` block: the
        block's work is committed at its end (rolled back on an error), then the connection
        goes back to the pool."""
        with pool(self.url).connection() as conn:
            yield conn

    def rows(self, sql: str, params: Sequence = ()) -> list[dict]:
        """All rows of one query."""
        with self.connection() as conn:
            return conn.execute(sql, params).fetchall()
