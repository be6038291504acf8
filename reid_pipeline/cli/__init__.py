"""`reid`: the command line, the front door.

One module per group of commands, named after what they do; this one parses the command
line (`build_parser`) and runs the command (`main`):

| module | commands / what |
|---|---|
| `server` | `reid up` (Dagster's webserver and daemon), `reid db`, `reid gallery` |
| `runs` | `reid process`, `reid retry`, `reid backfill`: videos through the per-video job |
| `reembed` | `reid reembed`: the videos whose vectors are of another face model, again through that job |
| `archive` | `reid status`, `reid prune`, `reid search`, `reid evidence` |
| `identity` | `reid identity`: corrections of the identities |
| `forget` | `reid forget` |
| `execution` | Dagster from the CLI: runs in this process with progress, backfills launched and followed |
| `environment` | folders, the Dagster home and exported variables, the database |
| `instance` | the Dagster instance's storage in the project's Postgres (schema `dagster`); the one-time import of a SQLite home |
| `run_health` | runs that hold pool slots, stalled and dead runs, for `reid status` and the commands that wait |
| `supervise` | `reid up`'s lock, the process group of Dagster's services, restarting the embedded Postgres |

The commands that process videos drive Dagster (the same code location the UI shows), so
this package is the one part of the core that may import it; it does so lazily, inside them.
It is also the one part, with `config`, that reads `Settings()`: it hands the values on.
It sits on top: it may import every stage, and nothing of the core imports it.
"""

from __future__ import annotations

import argparse
import gc
import os
import sys
from pathlib import Path

import psycopg

from reid_pipeline.cli.archive import cmd_evidence, cmd_prune, cmd_search, cmd_status
from reid_pipeline.cli.environment import prepare
from reid_pipeline.cli.forget import cmd_forget
from reid_pipeline.cli.identity import cmd_identity
from reid_pipeline.cli.reembed import cmd_reembed
from reid_pipeline.cli.runs import cmd_backfill, cmd_process, cmd_retry
from reid_pipeline.cli.server import cmd_db, cmd_gallery, cmd_up
from reid_pipeline.config import Settings
from reid_pipeline.database import redact

__all__ = ["build_parser", "main", "prepare"]


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
    reembed = sub.add_parser(
        "reembed", help="re-process the videos whose vectors are of another face model than the configured one",
        description="Vectors of different face models are never compared. This lists every video whose stored vectors"
                    " are of another model than the configured one (REID_FACE_BACKEND) and re-processes it through the"
                    " `process_video` job, here (a run per video) or as a backfill for the daemon (--backfill); the old"
                    " model's rows of each video go, and a model left without vectors is retired with its identities.")
    reembed.add_argument("--all", action="store_true", help="every registered video, whatever its vectors")
    reembed.add_argument("--dry-run", action="store_true", help="only list what would be re-processed")
    reembed.add_argument("--backfill", action="store_true",
                         help="launch a Dagster backfill that the daemon runs (needs `reid up` or a deployment, started"
                              " with the same REID_FACE_BACKEND) instead of running here")
    reembed.add_argument("--batch", type=int, metavar="N",
                         help="with --backfill: videos per process (default REID_BACKFILL_BATCH); 1: one run per video")
    reembed.add_argument("--wait", type=float, default=0, metavar="SECONDS",
                         help="with --backfill: wait up to SECONDS for the runs to finish, with progress")
    reembed.add_argument("--tags", help="with --backfill: JSON tags for the runs")
    reembed.add_argument("--log-level", default="CRITICAL",
                         help="Dagster console log level (ERROR adds the stack traces of failures, INFO shows progress)")
    reembed.set_defaults(func=cmd_reembed)
    status = sub.add_parser("status", help="videos and faces in the store, failures with their reasons, a line per video")
    status.add_argument("--all", action="store_true", help="every video, not only the 20 newest")
    status.add_argument("--failed", action="store_true", help="only the videos that failed or are partial, with why")
    status.add_argument("--json", action="store_true", help="everything as one JSON object (every video), for scripts")
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
    except psycopg.OperationalError as exc:
        first, settings = " ".join(str(exc).split()), Settings()
        url = settings.database_url
        where = f"at {redact(url)} (REID_DATABASE_URL; unset it to use the embedded Postgres)" if url else \
            f"(the embedded Postgres in {settings.pgdata}; `reid db stop`, then try again)"
        print(f"reid: cannot reach the database {where}: {first}", file=sys.stderr)
        return 2
    except psycopg.errors.InsufficientPrivilege as exc:
        # REID_DATABASE_URL's user may read and write but not create: the project's tables
        # and Dagster's schema are created on first use, which needs CREATE on the database
        first = str(exc).strip().splitlines()[0]
        print(f"reid: the database refused: {first}. The user of {redact(Settings().database_url or 'the database')}"
              " needs CREATE on its database (and on schema public) the first time, to create the project's tables and"
              " Dagster's schema `dagster`; or run `reid` once as a user who has it.", file=sys.stderr)
        return 2


def entry() -> int:
    """The `reid` command (and `python -m reid_pipeline`): `main`, then a quick exit.

    A reader that leaves early (`reid status | head`) closes the pipe: the next write, or the
    flush of what is buffered, raises BrokenPipeError. As Python's documentation advises
    (signal module, "Note on SIGPIPE"), the output is pointed at /dev/null so that the
    interpreter's own flush at exit does not fail again, and the command exits with 1."""
    try:
        code = main()
        sys.stdout.flush()  # what is still buffered meets a closed pipe here, not at exit
        return code
    except BrokenPipeError:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 1
    finally:
        # The process ends here and frees what is left. Without this, the interpreter's last
        # garbage collections walk every object of the ~2,600 modules Dagster brings in: 0.5-0.9 s
        # at the end of every command. Exit handlers and file flushes still run.
        gc.freeze()
