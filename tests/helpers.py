"""Helpers shared by the Dagster tests."""

import contextlib
import socket
import threading
import time

import yaml

from reid_pipeline.config import PROJECT_ROOT
from reid_pipeline.ingest.arrivals import partition_key_for
from reid_pipeline.ingest.sources import uri_for


def failure_message(result) -> str:
    failures = [e for e in result.all_events if e.event_type_value == "STEP_FAILURE"]
    return failures[0].step_failure_data.error.message if failures else ""


def readme_run_config(source) -> dict:
    """The run config of `register_archive` as the README gives it, with `source` in place
    of its example folder."""
    text = (PROJECT_ROOT / "README.md").read_text()
    start = text.index("```yaml\n", text.index("*Jobs* > `register_archive` > *Launchpad*")) + len("```yaml\n")
    block = text[start:text.index("```", start)]
    assert "/srv/archive" in block, block
    return yaml.safe_load(block.replace("/srv/archive", str(source)))


def process(defs, instance, store, paths, rebuild=True):
    """Each video through `process_video` (5 sampled frames per second), then the identities."""
    job = defs.resolve_job_def("process_video")
    for path in paths:
        key = partition_key_for(path.name)
        store.register_video(key, uri_for(path))
        instance.add_dynamic_partitions("videos", [key])
        result = job.execute_in_process(partition_key=key, instance=instance, raise_on_error=False,
                                        run_config={"ops": {"frame_detections": {"config": {"sample_fps": 5}}}})
        assert result.success, failure_message(result)
    if rebuild:
        assert defs.resolve_job_def("rebuild_identities").execute_in_process(instance=instance).success


def people(store):
    """The identities as sorted lists of (video, sequence number): independent of row ids."""
    groups = {}
    for r in store.rows("SELECT m.identity_id, s.partition_key, s.sequence_number FROM identity_sequences m"
                        " JOIN sequences s ON s.id = m.sequence_id"):
        groups.setdefault(r["identity_id"], []).append((r["partition_key"][:5], r["sequence_number"]))
    return sorted(sorted(g) for g in groups.values())


def sequence(store, video, number):
    """The row id of a video's sequence by its number (fix_a: 0 astronaut, 1 Tom Hanks; fix_b: 0 t1_0, 1 astronaut)."""
    [row] = store.sequences_at(partition_key_for(video), sequence_number=number)
    return row["id"]


@contextlib.contextmanager
def serve_gallery(ctx):
    """The gallery app over `ctx` on a free port of 127.0.0.1 (uvicorn on a thread), until
    the block ends; yields its base URL."""
    import uvicorn

    from reid_pipeline.presentation.gallery_app import create_app

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(create_app(ctx), host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)
