"""`reid status`, `reid prune`, `reid search` and `reid evidence`: what the archive holds,
where else a person appears, who is on screen at a moment."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from reid_pipeline.cli.environment import open_store, prepare
from reid_pipeline.config import Settings


def cmd_status(args: argparse.Namespace) -> int:
    """Counts per status, then a line per video (newest first): its whole partition key (what
    `search`, `evidence`, `retry` and `forget` take), file, faces, sequences, identities;
    videos held `processing` by a dead run; files not taken. `--failed`: only the videos
    that failed, with why; `--json`: all of it as one JSON object (for scripts)."""
    from reid_pipeline.ingest.sources import file_name

    settings = Settings()
    store = open_store(settings)
    counts, failed = store.status_summary()
    models = store.model_summary()
    limit = None if args.all or args.failed or args.json else 20
    videos = store.video_table(limit, statuses=("failed", "partial") if args.failed else None)
    stalled = dict(_stalled(store))
    skipped = store.skipped_files()
    if args.json:
        import json

        print(json.dumps({
            "statuses": counts, "models": models,
            "videos": [{**v, "file": file_name(v["source_uri"]), "stalled": stalled.get(v["partition_key"])} for v in videos],
            "skipped": skipped,
        }, default=str, indent=1))
        return 0
    if args.failed:
        for v in videos:
            print(f"{v['partition_key']}  {v['status']}  {file_name(v['source_uri'])}\n  {v['error'] or '(no reason recorded)'}")
        if not videos:
            print("no failed or partial video")
        _print_stalled(stalled)
        return 0
    if not counts:
        where = settings.inbox_bucket or settings.inbox
        print(f"no video yet: copy one into {where} while `reid up` runs, or run `reid process FILE...`"
              " or `reid backfill FOLDER`")
    for row in counts:
        print(f"{row['status']:12} {row['videos']:6d} videos {row['faces']:8d} faces (all models)")
    for row in failed:
        print(f"  {row['status']} {row['partition_key']}: {row['error']}")
    for m in models:  # vectors of different models are never compared: say which the archive holds
        print(f"model {m['model']}: {m['videos']} video{'s' if m['videos'] != 1 else ''}, {m['faces']} faces")
    if len(models) > 1:
        print("  (identities and search are per model; `reid reembed` re-processes the videos of the other models"
              " with the configured one)")
    if videos:
        width = max(len("partition key"), *(len(v["partition_key"]) for v in videos))  # whole keys: they are copied
        print(f"\n{'partition key':{width}} {'status':10} {'model':16} {'faces':>6} {'seq':>4} {'ids':>4} {'unres':>5}  file")
    for v in videos:
        note = f"  (duplicate of {v['duplicate_of']})" if v["duplicate_of"] else ""
        print(f"{v['partition_key']:{width}} {v['status']:10} {(v['model'] or '-'):16} {v['faces']:6d}"
              f" {v['sequences']:4d} {v['identities']:4d} {v['unresolved']:5d}  {file_name(v['source_uri'])}{note}")
    if limit is not None and len(videos) == limit:
        print(f"(the {limit} newest; --all lists every video)")
    _print_stalled(stalled)
    if skipped:
        print(f"\nnot taken from the inbox or the archive ({len(skipped)}):")
        for s in skipped:
            print(f"  {s['location']}: {s['reason']}")
    return 0


def _print_stalled(stalled: dict[str, str]) -> None:
    if stalled:
        print(f"\nprocessing, but nothing runs ({len(stalled)}):")
        for key, why in stalled.items():
            print(f"  {key}: {why}; `reid up` retries a dead run (or run `reid retry {key}`)")


def _stalled(store) -> list[tuple[str, str]]:
    """The videos held for `processing` whose run is not alive, with why (`cli.run_health`)."""
    keys = [r["partition_key"] for r in store.video_rows(statuses=["processing"])]
    if not keys:
        return []
    import dagster as dg

    from reid_pipeline.cli.run_health import stalled_video

    prepare(Settings())  # the Dagster instance's storage URL and home
    with dg.DagsterInstance.get() as instance:
        return [(key, why) for key in keys if (why := stalled_video(instance, key))]


def cmd_prune(args: argparse.Namespace) -> int:
    """Delete the partitions of `videos` that no registered video backs: a key typed into
    the UI's "Add a partition" box is a partition without a file, fails every run and
    stays in every asset's counts until it is removed."""
    import dagster as dg

    from reid_pipeline.ingest.catalog import stray_partitions

    settings = Settings()
    prepare(settings)
    store = open_store(settings)
    instance = dg.DagsterInstance.get()
    stray = stray_partitions(store, instance.get_dynamic_partitions("videos"))
    for key in stray:
        instance.delete_dynamic_partition("videos", key)
        print(f"removed partition {key!r}: no registered video")
    print(f"{len(stray)} partitions removed" if stray else "every partition names a registered video; nothing removed")
    return 0


class Refused(Exception):
    """A query the command cannot run: the message for the user and the exit code."""

    def __init__(self, message: str, code: int) -> None:
        super().__init__(message)
        self.code = code


def photo_query(settings: Settings, photo: str):
    """(backend, query vectors) of the largest face in `photo`; raises Refused saying why
    not (no such file, not an image: 2; no face in it: 1)."""
    import cv2

    from reid_pipeline.faces import load_backend
    from reid_pipeline.identities.archive import photo_query as face_query

    if not Path(photo).is_file():
        raise Refused(f"{photo}: no such file", 2)
    image = cv2.imread(photo)
    if image is None:
        raise Refused(f"{photo}: not an image", 2)
    backend = load_backend(settings.face_backend, insightface_root=settings.insightface_root,
                           insightface_pack=settings.insightface_pack, cache_dir=settings.model_cache)
    try:
        return backend, face_query(backend, image)
    except ValueError as exc:
        raise Refused(f"{photo}: {exc}", 1) from exc


def other_models_note(store, model: str) -> tuple[bool, str | None]:
    """What a photo's query (a vector of `model`, the configured one) cannot see: the
    archive's vectors of other models, never compared. (True, why) when it holds only
    those, so the query cannot find anyone; (False, a note) when it holds some as well;
    (False, None) when it holds `model`'s only, or nothing."""
    held = [m["model"] for m in store.models()]
    others = [m for m in held if m != model]
    if not others:
        return False, None
    if model not in held:
        return True, (f"the archive holds no vectors of {model} (the configured face model), only of {', '.join(others)},"
                      f" and vectors of different models are never compared: `reid reembed` re-processes the archive"
                      f" with {model} (or set REID_FACE_BACKEND to the archive's backend)")
    return False, (f"note: the videos with vectors of {', '.join(others)} were not searched (vectors of different models"
                   f" are never compared; `reid reembed` re-processes them with {model})")


def cmd_search(args: argparse.Namespace) -> int:
    """Where else does this person appear? Query by photo, by video time or by sequence."""
    from reid_pipeline.identities.archive import search
    from reid_pipeline.identities.matching import match_settings_for

    settings = Settings()
    store = open_store(settings)
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
            backend, vectors = photo_query(settings, args.photo)
        except Refused as exc:
            print(f"reid: {exc}", file=sys.stderr)
            return exc.code
        blind, note = other_models_note(store, backend.model_name)
        if note:
            print(f"reid: {note}" if blind else note, file=sys.stderr)
        if blind:
            return 1
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

    from reid_pipeline.faces.detection import chips_from_file, read_detections
    from reid_pipeline.presentation.evidence import evidence_at
    from reid_pipeline.sequences.tracking import current_columns
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
