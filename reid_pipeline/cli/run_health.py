"""Dead runs on the laptop: a run whose process is gone (a SIGKILLed run worker, a killed
`reid up` or `reid process`, a run worker that died with the embedded Postgres) is found,
marked failed, retried and its pool slots given back, by Dagster's own machinery:

- `LocalRunLauncher` is Dagster's `DefaultRunLauncher` (runs launched on the code server as
  `dagster api execute_run` processes) that can also tell whether a run's worker still
  lives (`check_run_worker_health`), which the default one cannot. With `run_monitoring`
  enabled in dagster.yaml, the daemon asks it about every STARTED run; a dead one is marked
  failed (`report_run_failed`), `run_retries` launch it again, and
  `free_slots_after_run_end_seconds` has the daemon give back the pool slots (`face_model`)
  of finished runs, which Dagster does not do by itself for a run whose worker died.
- The worker of a run is the process named by the first engine event of the run that
  carries a pid (Dagster writes one for `execute_run` and for steps executed in process):
  it lives when that pid is a live process started before the event (not a recycled pid).
- `resolve_dead_runs` and `free_finished_slots` do the same at once, for `reid up` when it
  starts (the runs a killed one left STARTED) and for the commands that run jobs in
  process (`reid process`, `reid retry`), which otherwise wait on slots that a dead run holds.
- `pool_holders` says who holds a pool's slots, for a command that waits on one.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass

from dagster import DagsterEventType, DagsterRunStatus, RunsFilter
from dagster._core.launcher import CheckRunHealthResult, DefaultRunLauncher, WorkerStatus
from dagster._core.storage.dagster_run import FINISHED_STATUSES

# a run with no process recorded this long after it started is taken for dead
NO_WORKER_GRACE_S = 120
DEAD_RUN_MESSAGE = "its process is gone"


@dataclass(frozen=True)
class Worker:
    """What is known of the process running a run."""

    pid: int | None  # None: no process recorded yet
    recorded_at: float  # when the run recorded it (the run's start when no pid)
    alive: bool

    def describe(self) -> str:
        if self.pid is None:
            return "no process recorded for it"
        return f"process {self.pid} {'runs' if self.alive else 'is gone'}"


def _process_start(pid: int) -> float | None:
    """When process `pid` started (epoch seconds); None when there is none (or a zombie)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        if fields[0] == "Z":
            return None
        with open("/proc/stat") as f:
            btime = next(int(line.split()[1]) for line in f if line.startswith("btime "))
        return btime + int(fields[19]) / os.sysconf("SC_CLK_TCK")
    except FileNotFoundError:
        return None
    except (OSError, StopIteration, IndexError, ValueError):  # no /proc (macOS): ask the kernel
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return None
        except PermissionError:
            pass
        return 0.0


def process_alive(pid: int, since: float, slack_s: float = 5.0) -> bool:
    """Does the process `pid` that a run recorded at `since` still run (the same one, not a
    later process that got its pid)?"""
    started = _process_start(pid)
    return started is not None and started <= since + slack_s


def run_worker(instance, run_id: str, started_at: float | None = None) -> Worker:
    """The process that runs `run_id` and whether it lives (see the module docstring)."""
    records = instance.get_records_for_run(run_id, of_type=DagsterEventType.ENGINE_EVENT, limit=100).records
    for record in records:
        entry = record.event_log_entry
        data = entry.dagster_event.engine_event_data if entry.dagster_event else None
        pid = data.metadata.get("pid") if data is not None and data.metadata else None
        if pid is not None:
            try:
                pid_value = int(pid.value)
            except (TypeError, ValueError):
                continue
            return Worker(pid_value, entry.timestamp, process_alive(pid_value, entry.timestamp))
    since = started_at or time.time()
    return Worker(None, since, time.time() - since < NO_WORKER_GRACE_S)


class LocalRunLauncher(DefaultRunLauncher):
    """Dagster's default launcher, able to tell a dead run worker (see the module docstring)."""

    @property
    def supports_check_run_worker_health(self) -> bool:
        return True

    def check_run_worker_health(self, run) -> CheckRunHealthResult:
        record = self._instance.get_run_record_by_id(run.run_id)
        worker = run_worker(self._instance, run.run_id, record.start_time if record else None)
        if worker.alive:
            return CheckRunHealthResult(WorkerStatus.RUNNING, worker.describe())
        return CheckRunHealthResult(WorkerStatus.FAILED, f"{DEAD_RUN_MESSAGE}: {worker.describe()}"
                                    " (killed, or ended with the service that started it)")


@dataclass
class DeadRun:
    run_id: str
    partition: str | None
    worker: Worker

    def line(self) -> str:
        video = f" (video {self.partition})" if self.partition else ""
        return (f"run {self.run_id[:8]}{video} was left running but {self.worker.describe()}: marked failed,"
                " its pool slots given back (under `reid up`, Dagster's run retries run it again)")


def dead_runs(instance) -> list[DeadRun]:
    """The runs Dagster holds for STARTED whose process is gone."""
    found = []
    for record in instance.get_run_records(filters=RunsFilter(statuses=[DagsterRunStatus.STARTED])):
        run = record.dagster_run
        worker = run_worker(instance, run.run_id, record.start_time or record.create_timestamp.timestamp())
        if not worker.alive:
            found.append(DeadRun(run.run_id, run.tags.get("dagster/partition"), worker))
    return found


def resolve_dead_runs(instance, who: str) -> list[DeadRun]:
    """Mark the dead STARTED runs failed (through Dagster: their RUN_FAILURE event is what
    run retries act on) and give back their pool slots; `who` says who found them."""
    found = dead_runs(instance)
    for dead in found:
        run = instance.get_run_by_id(dead.run_id)
        if run is None or run.is_finished:
            continue
        instance.report_run_failed(run, f"{who}: {DEAD_RUN_MESSAGE} ({dead.worker.describe()}); marked failed,"
                                        " its pool slots given back")
        free_slots(instance, dead.run_id)
    free_finished_slots(instance)
    return found


def free_slots(instance, run_id: str) -> int:
    if not instance.event_log_storage.supports_global_concurrency_limits:
        return 0
    return instance.event_log_storage.free_concurrency_slots_for_run(run_id) or 0


def free_finished_slots(instance) -> int:
    """Give back the pool slots held or awaited by runs that have finished or no longer
    exist (what the daemon does after `free_slots_after_run_end_seconds`, at once)."""
    storage = instance.event_log_storage
    if not storage.supports_global_concurrency_limits:
        return 0
    run_ids = storage.get_concurrency_run_ids()
    if not run_ids:
        return 0
    live = {r.run_id for r in instance.get_runs(filters=RunsFilter(run_ids=list(run_ids)))
            if r.status not in FINISHED_STATUSES}
    return sum(free_slots(instance, run_id) for run_id in run_ids - live)


@dataclass
class Holder:
    run_id: str
    step: str
    status: str
    partition: str | None
    worker: Worker | None


def pool_holders(instance, pool: str) -> list[Holder]:
    """Who holds the slots of `pool`: each claimed slot's run, step, status and process."""
    info = instance.event_log_storage.get_concurrency_info(pool)
    holders = []
    for slot in info.claimed_slots:
        record = instance.get_run_record_by_id(slot.run_id)
        run = record.dagster_run if record else None
        worker = run_worker(instance, slot.run_id, record.start_time if record else None) if run and not run.is_finished else None
        holders.append(Holder(slot.run_id, slot.step_key, run.status.value if run else "deleted",
                              run.tags.get("dagster/partition") if run else None, worker))
    return holders


def describe_holders(instance, pool: str) -> str:
    """A line: what holds `pool`'s slots and how to free them."""
    info = instance.event_log_storage.get_concurrency_info(pool)
    holders = pool_holders(instance, pool)
    if not holders:
        return f"waiting for a slot of pool {pool} (limit {info.limit})"
    said = "; ".join(
        f"run {h.run_id[:8]}{f' (video {h.partition})' if h.partition else ''} {h.status} in {h.step}"
        + (f", {h.worker.describe()}" if h.worker else "") for h in holders)
    return (f"waiting for a slot of pool {pool} (limit {info.limit}), held by: {said}. It frees when those runs end;"
            f" a dead run's slot is given back by `reid up` (within seconds) or by the next `reid process`/`reid retry`;"
            f" `dagster run delete RUN_ID` or the UI's Runs page (terminate) frees it by hand")


def stalled_video(instance, partition: str) -> str | None:
    """Why a video that the store holds for `processing` is not being processed (its last
    run finished or its process is gone, or it has no run), or None when its run is alive."""
    runs = instance.get_run_records(filters=RunsFilter(tags={"dagster/partition": partition}), limit=1)
    if not runs:
        return "no run of it exists"
    record = runs[0]
    run = record.dagster_run
    if run.status in (DagsterRunStatus.QUEUED, DagsterRunStatus.NOT_STARTED, DagsterRunStatus.STARTING):
        return None
    if run.is_finished:
        if run.is_complete_and_waiting_to_retry:
            return None
        return f"its last run {run.run_id[:8]} ended {run.status.value}"
    worker = run_worker(instance, run.run_id, record.start_time or record.create_timestamp.timestamp())
    if worker.alive:
        return None
    return f"its run {run.run_id[:8]} is dead ({worker.describe()})"


REEXECUTE = """
mutation Reexecute($parent: String!) {
  launchRunReexecution(reexecutionParams: {parentRunId: $parent, strategy: ALL_STEPS}) {
    __typename
    ... on LaunchRunSuccess { run { runId } }
    ... on PythonError { message }
    ... on RunConfigValidationInvalid { errors { message } }
  }
}
"""


class OutageRetries:
    """After the database came back (`EmbeddedWatch.on_back`): for `window_s`, the runs that
    failed during the outage and that Dagster's run retries will not run again (a step that
    failed on a lost connection counts as a step failure, which `run_retries` leaves alone)
    are re-executed, once each, through the webserver's GraphQL API (as the UI's
    "Re-execute" button does). Runs whose worker died are retried by Dagster itself."""

    def __init__(self, graphql_url: str, say, window_s: float = 180.0, every_s: float = 10.0) -> None:
        self.url, self.say, self.window_s, self.every_s = graphql_url, say, window_s, every_s
        self.since: float | None = None
        self.until = 0.0
        self.last = 0.0
        self.done: set[str] = set()

    def outage(self, down_since: float) -> None:
        self.since = down_since - 30 if self.since is None or time.time() > self.until else self.since
        self.until = time.time() + self.window_s

    def tick(self) -> None:
        if self.since is None or time.time() > self.until or time.time() - self.last < self.every_s:
            return
        self.last = time.time()
        import dagster as dg

        with dg.DagsterInstance.get() as instance:
            failed = instance.get_run_records(filters=RunsFilter(statuses=[DagsterRunStatus.FAILURE],
                                                                 updated_after=_utc(self.since)))
            for record in failed:
                run = record.dagster_run
                if run.run_id in self.done or run.is_complete_and_waiting_to_retry:
                    continue
                if run.tags.get("dagster/will_retry") == "true":
                    continue
                if instance.get_runs(filters=RunsFilter(tags={"dagster/parent_run_id": run.run_id}), limit=1):
                    self.done.add(run.run_id)
                    continue
                self.done.add(run.run_id)
                answer = _graphql(self.url, REEXECUTE, {"parent": run.run_id})["launchRunReexecution"]
                video = f" (video {run.tags['dagster/partition']})" if "dagster/partition" in run.tags else ""
                if answer["__typename"] == "LaunchRunSuccess":
                    self.say(f"run {run.run_id[:8]}{video} failed while the database was down: re-executed as run"
                             f" {answer['run']['runId'][:8]}")
                else:
                    self.say(f"run {run.run_id[:8]}{video} failed while the database was down; could not re-execute"
                             f" it: {answer}")


def _utc(epoch: float):
    from datetime import UTC, datetime

    return datetime.fromtimestamp(epoch, tz=UTC)


def _graphql(url: str, query: str, variables: dict) -> dict:
    import json
    import urllib.request

    request = urllib.request.Request(url, data=json.dumps({"query": query, "variables": variables}).encode(),
                                     headers={"Content-Type": "application/json"}, method="POST")
    with urllib.request.urlopen(request, timeout=30) as response:
        payload = json.loads(response.read())
    if payload.get("errors"):
        raise RuntimeError(f"GraphQL: {payload['errors']}")
    return payload["data"]
