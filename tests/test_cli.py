"""The `reid` command line in-process: process, status, evidence, search."""

import shutil

from reid_pipeline.cli import main
from reid_pipeline.ingest.arrivals import partition_key_for
from tests import synthetic


def test_cli_process_evidence_search_status(reid_env, store, capsys, videos_dir):
    first = videos_dir / "cli_cut.avi"
    synthetic.write_video(synthetic.cut_and_return(seconds_per_shot=1.5), first)
    bad = reid_env / "not a video.mp4"
    bad.write_text("hello")
    copy = reid_env / "copy.avi"
    shutil.copy(first, copy)

    link = reid_env / "evil.mp4"
    link.symlink_to("/etc/passwd")
    code = main(["process", str(first), str(bad), str(copy), str(reid_env / "missing.avi"), str(link), "--sample-fps", "4"])
    captured = capsys.readouterr()
    out = captured.out
    assert code == 1  # one failed, one missing, one refused
    assert "2 processed, 1 failed, 1 not found, 1 refused" in out
    assert "evil.mp4: not a video file" in captured.err
    assert "not a video.mp4: not a video container" in out
    assert "duplicate" in out
    assert "identities: 3" in out and "index.html" in out  # astronaut, tom_hanks, t1_0
    # biometric data is for the owner only
    data = reid_env / "home" / "data"
    assert data.stat().st_mode & 0o077 == 0
    chips = next(data.glob("frame_detections/*.parquet"))
    assert chips.stat().st_mode & 0o077 == 0

    key = partition_key_for(str(first.resolve()))
    assert main(["evidence", key, "--time", "0.5", "--out", str(reid_env / "ev.png")]) == 0
    out = capsys.readouterr().out
    assert "2 sequences on screen" in out and (reid_env / "ev.png").read_bytes()[:4] == b"\x89PNG"
    # face_sequences files written before the rename (sql/010) call the sequence number sequence_id
    import polars as pl

    for path in (data / "face_sequences").glob(f"{key}*.parquet"):
        table = pl.read_parquet(path)
        if "sequence_number" in table.columns:
            table.rename({"sequence_number": "sequence_id"}).write_parquet(path)
    assert main(["evidence", key, "--time", "0.5", "--out", str(reid_env / "ev_old.png")]) == 0
    assert "2 sequences on screen" in capsys.readouterr().out
    assert (reid_env / "ev_old.png").read_bytes() == (reid_env / "ev.png").read_bytes()
    assert main(["evidence", key, "--time", "100", "--out", str(reid_env / "none.png")]) == 1
    assert "nobody is on screen at 100.00 s" in capsys.readouterr().err and not (reid_env / "none.png").exists()

    # the person of the last shot (the astronaut, back after a cut) was also in the first shot
    assert main(["search", "--video", key, "--time", "4.0"]) == 0
    out = capsys.readouterr().out
    assert f"{key}:0" in out and "score" in out

    assert main(["status"]) == 0
    out = capsys.readouterr().out
    assert "failed" in out and "duplicate" in out and "not a video container" in out
    # a line per video, with its key and what it duplicates
    assert f"(duplicate of {key})" in out
    [line] = [ln for ln in out.splitlines() if ln.startswith(key + " ")]
    assert "ready" in line and line.endswith("cli_cut.avi")


def test_cli_says_what_is_wrong_with_a_query(reid_env, store, capsys, tmp_path):
    assert main(["search", "--photo", str(tmp_path / "missing.jpg")]) == 2
    assert "missing.jpg: no such file" in capsys.readouterr().err
    assert main(["search", "--sequence", "clip-1a2b3c4d"]) == 2
    assert "PARTITION_KEY:SEQUENCE_NUMBER" in capsys.readouterr().err


def test_retry_runs_again_what_did_not_finish(reid_env, store, capsys, videos_dir):
    """A video left `processing` by a run that died is run again by `reid retry`."""
    path = videos_dir / "retry_me.avi"
    synthetic.write_video(synthetic.two_people_walking(seconds=1.0), path)
    assert main(["process", str(path), "--sample-fps", "4"]) == 0
    key = partition_key_for(str(path.resolve()))
    with store.connection() as conn:  # as a killed run leaves it
        conn.execute("UPDATE videos SET status = 'processing' WHERE partition_key = %s", (key,))
    capsys.readouterr()
    assert main(["retry"]) == 0
    out = capsys.readouterr().out
    assert f"retry {key} (was processing)" in out and "1 processed, 0 failed" in out
    assert store.get_video(key)["status"] == "ready"
    assert main(["retry"]) == 0 and "nothing to retry" in capsys.readouterr().out


def test_retry_of_an_unknown_key_says_so_and_lists_what_can_be_retried(reid_env, store, capsys):
    """`reid retry no-such-key` while a video failed: the key is unknown, and the keys that
    can be retried are listed; nothing claims that every video is ready."""
    store.register_video("clip-1a2b3c4d", "file:///nowhere/clip.mp4")
    store.mark_failed("clip-1a2b3c4d", "raw_video: clip.mp4: not a video container")
    assert main(["retry", "no-such-key"]) == 1
    captured = capsys.readouterr()
    assert "no-such-key: unknown partition key" in captured.err
    assert "can be retried: clip-1a2b3c4d (failed)" in captured.err and "reid status" in captured.err
    assert "every video is ready" not in captured.out + captured.err
    with store.connection() as conn:
        conn.execute("UPDATE videos SET status = 'ready', error = NULL")
    assert main(["retry", "no-such-key"]) == 1
    assert "no video needs a retry" in capsys.readouterr().err


def test_process_of_a_folder_says_it_is_a_folder_and_what_to_do(reid_env, store, capsys):
    folder = reid_env / "holiday videos"
    folder.mkdir()
    assert main(["process", str(folder)]) == 1
    err = capsys.readouterr().err
    assert f"{folder}: a folder, not a video file" in err and "no such file" not in err
    assert f"reid process '{folder}'/*" in err and f"reid backfill '{folder}'" in err
    assert "nothing to process" in err


def test_a_closed_pipe_ends_the_command_quietly(reid_env, store):
    """`reid status | head`: the reader leaves before the output is written; the command
    exits without a BrokenPipeError traceback (or Python's "Exception ignored" note)."""
    import os
    import subprocess
    import sys

    for i in range(200):  # more than a pipe's buffer of lines: the writes themselves fail
        store.register_video(f"clip_{i:03d}-1a2b3c4d", f"file:///nowhere/clip_{i:03d}.mp4")
    reid = subprocess.Popen([sys.executable, "-m", "reid_pipeline", "status", "--all"], cwd=reid_env, env=os.environ.copy(),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    reid.stdout.close()  # as `head` does once it has its lines
    err = reid.stderr.read().decode()
    assert reid.wait(timeout=120) == 1
    assert "BrokenPipe" not in err and "Traceback" not in err and "Exception ignored" not in err, err


def test_the_file_mask_is_a_setting(reid_env, monkeypatch):
    import os

    from reid_pipeline.cli import prepare
    from reid_pipeline.config import Settings

    monkeypatch.setenv("REID_UMASK", "027")
    old = os.umask(0o077)
    try:
        prepare(Settings())
        probe = reid_env / "home" / "data" / "probe.txt"
        probe.write_text("x")
        assert probe.stat().st_mode & 0o777 == 0o640
    finally:
        os.umask(old)


def test_an_archive_registers_without_launching_and_stray_partitions_are_pruned(reid_env, store, capsys, videos_dir):
    import dagster as dg

    archive = reid_env / "archive"
    archive.mkdir()
    synthetic.write_video(synthetic.faceless(seconds=1.0), archive / "a.avi")
    shutil.copy(archive / "a.avi", archive / "b.avi")
    assert main(["backfill", str(archive), "--register-only"]) == 0
    out = capsys.readouterr().out
    assert "2 new, 0 already known: 2 videos under" in out and "nothing launched" in out
    instance = dg.DagsterInstance.get()
    key, other = (partition_key_for(str((archive / name).resolve())) for name in ("a.avi", "b.avi"))
    assert store.get_video(key)["status"] == "registered" and not instance.get_run_records()
    # again, once one is processed and one is being processed, with two more files: the known
    # ones are told apart, by status, and left as they are
    with store.connection() as conn:
        conn.execute("UPDATE videos SET status = 'processing' WHERE partition_key = ANY(%s)", ([key, other],))
    store.mark_ready(key)
    for name in ("c.avi", "d.avi"):
        shutil.copy(archive / "a.avi", archive / name)
    assert main(["backfill", str(archive), "--register-only"]) == 0
    assert "2 new, 2 already known (1 processing, 1 ready): 4 videos under" in capsys.readouterr().out
    assert (store.get_video(key)["status"], store.get_video(other)["status"]) == ("ready", "processing")
    assert not instance.get_run_records()
    # a key typed into the UI's "Add a partition" box backs no video
    instance.add_dynamic_partitions("videos", ["/home/me/typed by hand.mp4"])
    assert main(["prune"]) == 0
    assert "removed partition '/home/me/typed by hand.mp4'" in capsys.readouterr().out
    assert set(instance.get_dynamic_partitions("videos")) == {partition_key_for(str((archive / name).resolve()))
                                                              for name in ("a.avi", "b.avi", "c.avi", "d.avi")}


def test_every_subcommand_helps_and_common_mistakes_get_one_plain_line(tmp_path):
    """Run as a user would, from another folder, in fresh processes: `--help` of every
    subcommand, and the usual mistakes; stderr never holds a traceback or a warning that
    is not about the user's input."""
    import os
    import subprocess
    import sys

    from reid_pipeline.cli import build_parser

    env = {k: v for k, v in os.environ.items() if not k.startswith("REID_")}
    env["REID_HOME"] = str(tmp_path / "home")

    def reid(*args):
        done = subprocess.run([sys.executable, "-m", "reid_pipeline", *args], cwd=tmp_path, env=env,
                              capture_output=True, text=True, timeout=120)
        assert "Traceback" not in done.stderr and "Warning" not in done.stderr, done.stderr
        return done

    commands = sorted(build_parser()._subparsers._group_actions[0].choices)
    assert {"up", "process", "backfill", "search", "forget", "identity", "gallery", "status", "prune"} <= set(commands)
    for command in commands:
        assert reid(command, "--help").returncode == 0
    missing = reid("process", "nowhere.mp4")
    assert missing.returncode == 1 and "nowhere.mp4: no such file" in missing.stderr
    assert "nothing to process" in missing.stderr and "summary" not in missing.stdout  # no empty table
    assert "no such file" in reid("search", "--photo", "nowhere.jpg").stderr
    assert reid("evidence", "no-such-key", "--time", "1").returncode == 1
    assert reid("backfill", "not-a-folder").returncode == 2


def test_database_mistakes_get_one_plain_line(tmp_path, pg_url):
    """REID_DATABASE_URL naming a server that is not there, or a user who may not create the
    tables and Dagster's schema on first use: one line that says so, the password hidden."""
    import os
    import socket
    import subprocess
    import sys

    import psycopg

    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute("DROP DATABASE IF EXISTS locked")
        conn.execute("CREATE DATABASE locked")
        conn.execute("DROP ROLE IF EXISTS viewer")
        conn.execute("CREATE ROLE viewer LOGIN PASSWORD 'pw'")
    with psycopg.connect(pg_url.replace("@/postgres?", "@/locked?", 1), autocommit=True) as conn:
        conn.execute("REVOKE CREATE ON SCHEMA public FROM PUBLIC")
        conn.execute("REVOKE CREATE ON DATABASE locked FROM PUBLIC")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        free_port = s.getsockname()[1]

    def reid(url):
        env = {k: v for k, v in os.environ.items() if not k.startswith(("REID_", "DAGSTER_"))}
        env.update(REID_HOME=str(tmp_path / "home"), REID_DATABASE_URL=url)
        done = subprocess.run([sys.executable, "-m", "reid_pipeline", "status"], cwd=tmp_path, env=env,
                              capture_output=True, text=True, timeout=120)
        assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr
        return done.stderr

    gone = reid(f"postgresql://x:secret@127.0.0.1:{free_port}/nope")
    assert "cannot reach the database at postgresql://x:***@127.0.0.1" in gone and "secret" not in gone
    refused = reid(pg_url.replace("postgres:@/postgres?", "viewer:pw@/locked?", 1))
    assert "the database refused: permission denied" in refused and "needs CREATE" in refused and ":pw@" not in refused


def test_process_on_a_terminal_shows_the_step_it_is_in(tmp_path, two_people_video):
    """On a terminal (a pseudo-terminal from util-linux's `script`), `reid process` keeps one
    progress line per video: seconds, the step running, frames analysed."""
    import os
    import shlex
    import shutil as sh
    import subprocess
    import sys

    import pytest

    if not sh.which("script"):
        pytest.skip("util-linux `script` is not installed")
    env = {k: v for k, v in os.environ.items() if not k.startswith("REID_")}
    env["REID_HOME"] = str(tmp_path / "home")
    command = shlex.join([sys.executable, "-m", "reid_pipeline", "process", str(two_people_video[0])])
    done = subprocess.run(["script", "-qec", command, "/dev/null"], cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stdout
    lines = done.stdout.replace("\r", "\n")
    assert "frame_detections" in lines and "1 processed, 0 failed" in lines


def test_run_progress_reads_only_the_events_after_its_cursor():
    """`reid process`'s progress line follows a run from its event log after a cursor: each
    read returns only the new events, not the whole log again."""
    import dagster as dg

    from reid_pipeline.cli.execution import RunProgress

    @dg.op
    def frame_detections(context: dg.OpExecutionContext) -> None:
        context.log.info("30/60 frames analysed (3.0 s into the video)")

    @dg.job
    def one_step():
        frame_detections()

    with dg.instance_for_test() as instance:
        result = one_step.execute_in_process(instance=instance)
        progress = RunProgress(instance, result.run_id)
        first = progress.poll()
        assert first == len(instance.all_logs(result.run_id)) > 5
        assert progress.step == "frame_detections" and progress.detail.startswith("30/60 frames analysed")
        assert progress.poll() == 0  # nothing new: nothing read
        instance.report_engine_event("one more", instance.get_run_by_id(result.run_id))
        assert progress.poll() == 1


def test_status_shows_whole_keys_dead_runs_failures_and_json(reid_env, store, capsys):
    """`reid status` prints each partition key whole (it is copied into `reid retry`), says
    which `processing` video has a dead run, lists only failures with `--failed`, and gives
    everything as JSON with `--json`; on an empty archive it says how videos get in."""
    import json
    import subprocess
    import time

    import dagster as dg

    assert main(["status"]) == 0
    assert f"no video yet: copy one into {reid_env / 'inbox'}" in capsys.readouterr().out

    from reid_pipeline.cli.environment import prepare
    from reid_pipeline.config import Settings

    long_key = "a_very_long_file_name_from_a_camera_2024_06_01_holiday-1a2b3c4d"
    store.register_video(long_key, "file:///nowhere/a very long file name.mp4")
    store.register_video("broken-5e6f7a8b", "file:///nowhere/broken.mp4")
    store.mark_failed("broken-5e6f7a8b", "raw_video: broken.mp4: not a video container")
    with store.connection() as conn:
        conn.execute("UPDATE videos SET status = 'processing' WHERE partition_key = %s", (long_key,))
    # its run STARTED in a process that has since gone (as a killed `reid up` leaves it)
    gone = subprocess.Popen(["true"])
    gone.wait()
    prepare(Settings())
    run_id = "deadbeef-0000-4000-8000-000000000002"
    with dg.DagsterInstance.get() as instance:
        instance.add_run(dg.DagsterRun(job_name="process_video", run_id=run_id, status=dg.DagsterRunStatus.STARTED,
                                       tags={"dagster/partition": long_key}))
        from dagster._core.events import DagsterEvent, DagsterEventType, EngineEventData
        from dagster._core.events.log import EventLogEntry

        event = DagsterEvent(DagsterEventType.ENGINE_EVENT.value, "process_video",
                             message=f"Started process for run (pid: {gone.pid}).",
                             event_specific_data=EngineEventData.in_process(gone.pid))
        instance.store_event(EventLogEntry(error_info=None, level="INFO", user_message=event.message or "",
                                           run_id=run_id, timestamp=time.time(), dagster_event=event, job_name="process_video"))
    capsys.readouterr()

    assert main(["status"]) == 0
    out = capsys.readouterr().out
    [line] = [ln for ln in out.splitlines() if ln.startswith(long_key + " ")]
    assert "processing" in line and line.endswith("a very long file name.mp4")
    assert "processing, but nothing runs (1):" in out
    assert f"{long_key}: its run deadbeef is dead" in out and f"reid retry {long_key}" in out

    assert main(["status", "--failed"]) == 0
    out = capsys.readouterr().out
    assert "broken-5e6f7a8b  failed  broken.mp4" in out and "not a video container" in out
    assert f"{long_key}  " not in out  # not failed: only under "nothing runs"

    assert main(["status", "--json"]) == 0
    status = json.loads(capsys.readouterr().out)
    videos = {v["partition_key"]: v for v in status["videos"]}
    assert videos[long_key]["stalled"].startswith("its run deadbeef is dead")
    assert videos["broken-5e6f7a8b"]["status"] == "failed" and videos["broken-5e6f7a8b"]["file"] == "broken.mp4"
    assert {s["status"] for s in status["statuses"]} == {"processing", "failed"}
