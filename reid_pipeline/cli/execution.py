"""Dagster driven from the command line: this checkout's code location, runs executed in
this process (a video, the identities, the gallery's recomputations) with a progress line,
backfills launched for the daemon and followed, and the runs a forgotten video or person
leaves behind.

Nothing here parses arguments; what is printed is the progress of runs (a line on a
terminal, a bar while waiting for a backfill). The commands (`runs`, `forget`, ...) say
what came out."""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass

from reid_pipeline.config import PROJECT_ROOT
from reid_pipeline.store import Store

QUIET_LOGGERS = {"console": {"config": {"log_level": "WARNING"}}}


def code_location():
    """This checkout's Dagster definitions and instance, for commands that run jobs here."""
    sys.path.insert(0, str(PROJECT_ROOT))
    import dagster as dg

    from definitions import build_definitions
    from reid_pipeline.cli.instance import pool_connections

    instance = dg.DagsterInstance.get()
    pool_connections(instance)
    return build_definitions(), instance


@dataclass
class VideoRun:
    """How one video's `process_video` run went."""

    name: str
    partition_key: str
    status: str
    faces: int
    seconds: float
    error: str
    model: str = ""  # the embedding model that made its vectors


def run_video(job, instance, store: Store, name: str, key: str, run_config: dict) -> VideoRun:
    """Run `process_video` for the partition `key` in this process (with a progress line on
    a terminal) and read back how it went: its status in the store, its faces, the error."""
    t0 = time.perf_counter()
    run_id = str(uuid.uuid4())
    with RunProgress(instance, run_id), PoolWatch(instance, run_id):
        result = execute_stoppably(instance, run_id, lambda: job.execute_in_process(
            partition_key=key, instance=instance, run_config=run_config, raise_on_error=False, run_id=run_id))
    elapsed = time.perf_counter() - t0
    faces, error, model = 0, "", ""
    for event in result.get_asset_materialization_events():
        if event.asset_key.to_user_string() == "face_embeddings":
            faces = event.materialization.metadata["faces"].value
            model = event.materialization.metadata["model"].value
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
    return VideoRun(name, key, status, faces, elapsed, error, model)


def execute_stoppably(instance, run_id: str, execute):
    """`execute()` (an in-process run of `run_id`) on a thread of its own, so that Ctrl-C and
    SIGTERM always stop the command: on the main thread Dagster captures both and looks at
    them only between steps, never while a step waits for a pool slot. When stopped, the run
    is marked canceled and its pool slots given back, and the command exits (130)."""
    import signal

    from reid_pipeline.cli.run_health import free_slots

    outcome: dict = {}

    def work() -> None:
        try:
            outcome["result"] = execute()
        except BaseException as exc:  # noqa: BLE001 (raised again on the main thread)
            outcome["error"] = exc

    def terminate(_signum, _frame) -> None:
        raise KeyboardInterrupt

    worker = threading.Thread(target=work, name=f"run-{run_id[:8]}", daemon=True)
    previous = signal.signal(signal.SIGTERM, terminate) if threading.current_thread() is threading.main_thread() else None
    try:
        worker.start()
        while worker.is_alive():
            worker.join(0.5)
    except KeyboardInterrupt:
        run = instance.get_run_by_id(run_id)
        if run is not None and not run.is_finished:
            instance.report_run_canceled(run, "stopped: the command running it was interrupted (Ctrl-C or SIGTERM)")
        free_slots(instance, run_id)
        print(f"\nreid: stopped; run {run_id[:8]} marked canceled and its pool slots given back", file=sys.stderr, flush=True)
        raise SystemExit(130) from None
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
    if "error" in outcome:
        raise outcome["error"]
    return outcome["result"]


class PoolWatch(threading.Thread):
    """Says on stderr (terminal or not) when the run waits for a pool slot: which runs hold
    the slots and how to free them (`run_health.describe_holders`), at once and then every
    `every_s` while it waits."""

    def __init__(self, instance, run_id: str, every_s: float = 60.0):
        super().__init__(daemon=True)
        self.instance, self.run_id, self.every_s, self.halt = instance, run_id, every_s, threading.Event()
        self.cursor: str | None = None
        self.pool: str | None = None
        self.said = 0.0

    def __enter__(self):
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.halt.set()
        self.join()

    def poll(self) -> None:
        more = True
        while more:
            page = self.instance.get_records_for_run(self.run_id, cursor=self.cursor, limit=500)
            for record in page.records:
                entry = record.event_log_entry
                message = entry.user_message or ""
                if "blocked by limit for pool" in message:
                    pool = message.rsplit(" ", 1)[-1]
                    if pool != self.pool:
                        self.pool, self.said = pool, 0.0
                elif entry.dagster_event is not None and entry.dagster_event.event_type_value == "STEP_START":
                    self.pool = None
            self.cursor, more = page.cursor, page.has_more

    def run(self) -> None:
        from reid_pipeline.cli.run_health import describe_holders

        while not self.halt.wait(1.0):
            try:
                self.poll()
                if self.pool and time.monotonic() - self.said >= self.every_s:
                    self.said = time.monotonic()
                    print(f"\nreid: {describe_holders(self.instance, self.pool)}", file=sys.stderr, flush=True)
            except Exception:  # noqa: BLE001 (a hint, best effort)
                continue


class RunProgress(threading.Thread):
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


def rebuild_identities(defs, instance, loggers: dict | None = None) -> str | None:
    """No daemon here to run the automation: recompute the archive's identities (and the
    gallery) now, in this process. Returns what came out, in a line (None if nothing did)."""
    rebuilt = defs.resolve_job_def("rebuild_identities").execute_in_process(
        instance=instance, run_config={"loggers": loggers or QUIET_LOGGERS}, raise_on_error=False,
    )
    said = None
    for event in rebuilt.get_asset_materialization_events():
        md = event.materialization.metadata
        if "identities" in md and "gallery" in md:
            said = (f"identities: {md['identities'].value} ({md['in_several_videos'].value} in several videos;"
                    f" {md['unresolved_sequences'].value} short sequences unresolved); gallery {md['gallery'].value}")
    return said


def forget_runs(instance, plan) -> int:
    """What Dagster keeps of a forgotten video or person: the runs whose event logs hold
    pictures of them (the SQL event log cannot wipe partitions, and `wipe_assets` keeps the
    events), and a video's dynamic partition; in the instance, and in a SQLite history that
    was imported into it and kept aside (`cli/instance.py`), which holds the same pictures.
    Returns how many runs were deleted from the instance."""
    from reid_pipeline.cli.instance import imported_histories, sqlite_instance

    deleted = _forget_runs_in(instance, plan)
    for folder in imported_histories(instance.root_directory):
        with sqlite_instance(folder) as kept:
            _forget_runs_in(kept, plan)
    return deleted


def _forget_runs_in(instance, plan) -> int:
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


class DagsterRecompute:
    """The gallery's recomputations: each a run of `rebuild_identities` in this process
    (one at a time, in order, on a worker thread), recorded in the Dagster instance, so it
    shows in the UI next to the runs of the inbox and the backfills."""

    def __init__(self, defs, instance, run_config: dict | None = None) -> None:
        from concurrent.futures import ThreadPoolExecutor

        self.job = defs.resolve_job_def("rebuild_identities")
        self.instance = instance
        self.run_config = run_config or {"loggers": QUIET_LOGGERS}
        self.worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="rebuild_identities")
        self.waiting: set[str] = set()

    def start(self, reason: str) -> str:
        """Queue a run; returns its run id at once."""
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
        return forget_runs(self.instance, plan)


# `dagster job backfill` takes the partitions as one argument: chunks of this many keys stay
# well under the kernel's limit on the length of one argument
BACKFILL_CHUNK = 500


class LaunchError(Exception):
    """`dagster job ...` failed; the message is its output."""


def _dagster(*args: str) -> str:
    """`dagster <args>` on the checkout's workspace; its stdout (LaunchError with its output)."""
    command = [sys.executable, "-m", "dagster", *args]
    launched = subprocess.run(command, cwd=PROJECT_ROOT, capture_output=True, text=True)
    if launched.returncode != 0:
        raise LaunchError(launched.stdout + launched.stderr)
    return launched.stdout


def launch_partition_backfill(keys: list[str], tags: str | None) -> str:
    """A Dagster backfill of `process_video` for `keys` (one run per video, run by the
    daemon); returns its backfill id."""
    command = ["job", "backfill", "-w", str(PROJECT_ROOT / "workspace.yaml"), "-j", "process_video",
               "--partitions", ",".join(keys), "--noprompt"]
    if tags:
        command += ["--tags", tags]
    out = _dagster(*command)
    return next(line.split("`")[1] for line in out.splitlines() if "Launched backfill" in line)


def launch_batched_backfill(keys: list[str], batch: int, tags: str | None) -> str:
    """One run of `backfill_videos` for all the videos: batches of `batch` videos run as steps
    in their own processes, each video an ordinary `process_video` run of its own. Returns
    the backfill id (the `reid/backfill` tag of its runs)."""
    import yaml

    backfill_id = f"bf-{uuid.uuid4().hex[:12]}"
    all_tags = {**(json.loads(tags) if tags else {}), "reid/backfill": backfill_id}
    config = {"ops": {"plan_batches": {"config": {"partition_keys": keys, "batch_size": batch}}}}
    with tempfile.NamedTemporaryFile("w", suffix=".yaml", prefix="reid-backfill-") as f:
        yaml.safe_dump(config, f)  # a file: thousands of keys would overrun one argument
        f.flush()
        _dagster("job", "launch", "-w", str(PROJECT_ROOT / "workspace.yaml"), "-j", "backfill_videos", "-c", f.name,
                 "--tags", json.dumps(all_tags))
    return backfill_id


@dataclass
class BackfillOutcome:
    settled: bool  # every partition's last run finished (or every run launching them did)
    finished: list  # the last run of each partition that finished
    failed: list  # of those, the ones that did not succeed


def wait_for_backfills(instance, tag_filters: list[dict], total: int, timeout_s: float) -> BackfillOutcome:
    """Follow the backfills (with a progress bar) until every partition's latest run has
    finished (a retried partition counts once, by its last attempt), or every run that
    launches them has, or `timeout_s` has passed."""
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
    return BackfillOutcome(settled, done, [r for r in done if r.status != dg.DagsterRunStatus.SUCCESS])
