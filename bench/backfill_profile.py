"""A cProfile of `process_batch`'s per-video loop: N one-second generated videos through
`backfill_videos` in this process (`execute_in_process`: one batch, no step processes), on
an instance with the project's dagster.yaml (storage in the embedded Postgres, schema
`dagster`, as `reid` sets it up) or, with SQLITE_INSTANCE=1, the SQLite storage that the
laptop used before; prints the events of one video run by type and the overhead per video
(wall - the steps' own durations), and writes the profile to PROF_OUT.
Usage: PYTHONPATH=. .venv/bin/python bench/backfill_profile.py [N]
       .venv/bin/python -c "import pstats; pstats.Stats('/tmp/backfill.prof').sort_stats('cumulative').print_stats(60)"
"""

# ruff: noqa: E402  (the environment is set before the project is imported: settings read it)
import collections
import cProfile
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
N = int(sys.argv[1]) if len(sys.argv) > 1 else 20
root = Path(tempfile.mkdtemp(prefix="bfprof-", dir="/tmp"))
home = root / "home"
(home / "dagster_home").mkdir(parents=True)
shutil.copy(ROOT / "dagster.yaml", home / "dagster_home" / "dagster.yaml")
os.environ.update({"REID_HOME": str(home), "REID_DATA_ROOT": str(home / "data"), "REID_INBOX": str(root / "inbox"),
                   "REID_FACE_BACKEND": "dlib", "DAGSTER_HOME": str(home / "dagster_home"), "REID_SAMPLE_FPS": "2"})
(root / "inbox").mkdir()
from reid_pipeline.config import Settings
from reid_pipeline.database import embedded_server
from reid_pipeline.store import Store

server = embedded_server(root / "pgdata")
os.environ["REID_DATABASE_URL"] = server.get_uri()
Store(server.get_uri()).migrate(Settings().sql_dir)
if os.environ.get("SQLITE_INSTANCE"):
    import yaml
    cfg = yaml.safe_load((ROOT / "dagster.yaml").read_text())
    del cfg["storage"]  # Dagster's default: SQLite files under DAGSTER_HOME
    (home / "dagster_home" / "dagster.yaml").write_text(yaml.safe_dump(cfg))
    print("instance on SQLite")
else:
    from reid_pipeline.cli.instance import URL_VARIABLE, ensure_schema, storage_url
    ensure_schema(server.get_uri())
    os.environ[URL_VARIABLE] = storage_url(server.get_uri())
    print("instance on", os.environ[URL_VARIABLE])
import dagster as dg

from assets.backfill import BACKFILL_TAG
from definitions import build_definitions
from reid_pipeline.ingest.arrivals import partition_key_for
from reid_pipeline.ingest.sources import uri_for
from tests import synthetic

arch = root / "archive"
paths = []
for i in range(N + 2):
    scene = synthetic.two_people_walking(seconds=1.0) if i % 2 == 0 else synthetic.faceless(seconds=1.0)
    if i % 2 == 0:
        scene = synthetic.Scene([synthetic.Shot(s.frames, synthetic.background_for(i), s.actors, s.shapes) for s in scene],
                                size=scene.size, fps=scene.fps)
    p = arch / f"clip_{i:04d}.avi"
    synthetic.write_video(scene, p)
    paths.append(p)
store = Store(server.get_uri())
defs = build_definitions()
try:
    with dg.DagsterInstance.get() as instance:
        keys = []
        for p in paths:
            k = partition_key_for(str(p))
            store.register_video(k, uri_for(p))
            keys.append(k)
        instance.add_dynamic_partitions("videos", keys)
        job = defs.resolve_job_def("backfill_videos")
        def run(ks, tag):
            return job.execute_in_process(instance=instance, raise_on_error=True, tags={BACKFILL_TAG: tag},
                run_config={"ops": {"plan_batches": {"config": {"partition_keys": ks, "batch_size": 100, "sample_fps": 2.0}}}})
        run(keys[:2], "warm")  # model load, imports
        prof = cProfile.Profile()
        t0 = time.perf_counter()
        prof.enable()
        run(keys[2:], "prof")
        prof.disable()
        wall = time.perf_counter() - t0
        runs = list(instance.get_run_records(filters=dg.RunsFilter(tags={BACKFILL_TAG: "prof"}, job_name="process_video")))
        step_s = 0.0
        nev = 0
        for r in runs:
            recs = instance.get_records_for_run(r.dagster_run.run_id, limit=10000).records
            nev += len(recs)
            step_s += sum(x.event_log_entry.dagster_event.event_specific_data.duration_ms for x in recs
                          if x.event_log_entry.dagster_event and x.event_log_entry.dagster_event.event_type_value == "STEP_SUCCESS") / 1000
        c = collections.Counter()
        for x in instance.get_records_for_run(runs[0].dagster_run.run_id, limit=10000).records:
            e = x.event_log_entry
            c[e.dagster_event.event_type_value if e.dagster_event else "LOG:" + e.user_message[:50]] += 1
        for k, v in c.most_common():
            print(v, k)
        print(f"videos={N} wall={wall:.2f}s per_video={wall/N:.3f}s step_per_video={step_s/N:.3f}s overhead={(wall-step_s)/N:.3f}s events/run={nev/len(runs):.1f}")
        prof.dump_stats(str(Path(os.environ.get("PROF_OUT", "/tmp/backfill.prof"))))
finally:
    server.stop()
    shutil.rmtree(root, ignore_errors=True)
