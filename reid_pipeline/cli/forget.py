"""`reid forget`: remove a video or a person completely, after asking."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from reid_pipeline.cli.archive import Refused, other_models_note, photo_query
from reid_pipeline.cli.environment import open_store, prepare
from reid_pipeline.cli.execution import code_location, forget_runs
from reid_pipeline.cli.runs import report_identities
from reid_pipeline.config import Settings
from reid_pipeline.store import Store


def cmd_forget(args: argparse.Namespace) -> int:
    """Forget a video or a person: rows, files, chips, reports, cached copies, the Dagster
    runs whose event logs show their faces; the gallery is rebuilt. Asks first."""

    from reid_pipeline.forget import carry_out, plan_identity, plan_video
    from reid_pipeline.inbox import partition_key_for

    settings = Settings()
    prepare(settings)
    store = open_store(settings)
    try:
        if args.video:
            key = args.video if store.get_video(args.video) else partition_key_for(str(Path(args.video).resolve()))
            plan = plan_video(store, settings.data_path(), key, settings.video_cache)
        else:
            identity = args.identity or identity_of_photo(store, settings, args.photo)
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
    defs, instance = code_location()
    runs = forget_runs(instance, plan)
    print(f"forgotten: {counts['faces']} faces, {counts['sequences']} sequences, {counts['files']} files or folders"
          f" deleted, {counts['files_rewritten']} videos' files rewritten, {runs} Dagster runs deleted"
          + ("; source file deleted" if counts["source_deleted"] else "")
          + (f"; taken out of {counts['corrections_edited']} corrections" if counts["corrections_edited"] else ""))
    report_identities(defs, instance)
    return 0


def identity_of_photo(store: Store, settings: Settings, photo: str) -> str | None:
    """The identity that the largest face of `photo` matches best (None, said why)."""
    from reid_pipeline.archive import search
    from reid_pipeline.matching import match_settings_for

    try:
        backend, vectors = photo_query(settings, photo)
    except Refused as exc:
        print(f"reid: {exc}", file=sys.stderr)
        return None
    blind, note = other_models_note(store, backend.model_name)
    if blind:
        print(f"reid: {photo}: {note}; or forget by --identity", file=sys.stderr)
        return None
    if note:  # the person may also be in those videos: they are not forgotten by this
        print(f"{note}; the person's sightings there are not forgotten by this photo", file=sys.stderr)
    results = search(store, backend.model_name, backend.dim, vectors, match_settings_for(backend.model_name))
    results = [r for r in results if r["identity_id"].startswith("person-")]
    if not results:
        print(f"reid: {photo}: matches nobody in the archive; nothing to forget", file=sys.stderr)
        return None
    return results[0]["identity_id"]
