"""`reid reembed`: bring the archive to the configured face model.

Vectors of different models are never compared, so after a change of model (dlib's
`dlib_resnet_v1`, then YuNet + SFace's `sface_2021dec`) an archive holds two worlds: the old
videos keep their vectors, identities and gallery of the old model, and new videos get the
new one. `reid reembed` lists every registered video whose stored vectors are of another
model than the configured one (with `--all`, every video), says what it will do, and
re-processes them through the per-video job `process_video`: here in this process, a run per
video with the same progress lines as `reid retry` (the default), or as a Dagster backfill
that the daemon runs (`--backfill`, as `reid backfill` does). Storing a video's new faces
removes its rows of the old model (`Store.replace_faces`); a model left without faces is
retired with its identities and gallery. The runs show in the UI like any other.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from dataclasses import dataclass, field

from reid_pipeline.cli.environment import open_store, prepare
from reid_pipeline.config import Settings
from reid_pipeline.store import Store

REEMBED_TAG = "reid/reembed"  # on the runs of a `--backfill`: the model they re-embed with


@dataclass
class ReembedPlan:
    """Which videos `reid reembed` re-processes with `model`, and which it leaves."""

    model: str  # the configured model
    stale: list[dict] = field(default_factory=list)  # vectors (or the record) of another model; `was`: those models
    rest: list[dict] = field(default_factory=list)  # with --all: every other video
    missing: list[dict] = field(default_factory=list)  # their source file is gone: left as they are
    unrecorded: int = 0  # processed, no faces, no record of the model that looked (stored before sql/011)

    @property
    def videos(self) -> list[dict]:
        return self.stale + self.rest

    def describe(self, dry_run: bool) -> str:
        """One line: what the videos hold and what is done with them."""
        olds = Counter(m for v in self.stale for m in v["was"])
        what = ", ".join(f"{m} ({n})" if len(olds) > 1 else m for m, n in sorted(olds.items()))
        verb = "would re-process" if dry_run else "re-processing"
        if not self.rest:
            have = "has" if len(self.stale) == 1 else "have"
            them = "it" if len(self.stale) == 1 else "them"
            return f"{_videos(len(self.stale))} {have} vectors of {what}; {verb} {them} with {self.model}"
        if not self.stale:
            return f"{_videos(len(self.rest))} (--all); {verb} {'it' if len(self.rest) == 1 else 'them'} with {self.model}"
        have = "has" if len(self.stale) == 1 else "have"
        return (f"{_videos(len(self.stale))} {have} vectors of {what}, {len(self.rest)} more with --all;"
                f" {verb} {_videos(len(self.videos))} with {self.model}")


def _videos(n: int) -> str:
    return f"{n} video{'s' if n != 1 else ''}"


def plan_reembed(store: Store, model: str, everything: bool = False) -> ReembedPlan:
    """The registered videos whose faces or sequences are of a model other than `model`, or
    that were last embedded with another (a video without faces records its model too);
    with `everything`, every video. A local source file that is gone is left out: its run
    would fail and mark a video that still has its vectors `failed`."""
    from reid_pipeline.ingest.sources import source_file

    plan = ReembedPlan(model)
    for video in store.video_models():
        was = sorted(({*video["stored"], video["model"]}) - {None, model})
        if not was and not everything:
            if not video["stored"] and video["model"] is None and video["status"] in ("ready", "partial"):
                plan.unrecorded += 1
            continue
        source = source_file(video["source_uri"])
        if source is not None and not source.exists():
            plan.missing.append({**video, "was": was})
        elif was:
            plan.stale.append({**video, "was": was})
        else:
            plan.rest.append({**video, "was": was})
    return plan


def configured_backend(settings: Settings):
    """The face backend the settings name (`REID_FACE_BACKEND`), loaded as the runs load it."""
    from reid_pipeline.faces import load_backend

    return load_backend(settings.face_backend, insightface_root=settings.insightface_root,
                        insightface_pack=settings.insightface_pack, cache_dir=settings.model_cache)


def cmd_reembed(args: argparse.Namespace) -> int:
    """Re-process the videos whose vectors are of another face model than the configured
    one (every video with --all); --dry-run only lists them."""
    from reid_pipeline.ingest.sources import file_name

    settings = Settings()
    prepare(settings)
    store = open_store(settings)
    model = configured_backend(settings).model_name
    plan = plan_reembed(store, model, args.all)
    for video in plan.missing:
        print(f"reid: {video['partition_key']}: its source {video['source_uri']} is gone; left as it is"
              + (f" (vectors of {', '.join(video['was'])})" if video["was"] else ""), file=sys.stderr)
    if not plan.videos:
        note = (f" ({_videos(plan.unrecorded)} without faces predate the record of their model: --all re-processes"
                f" {'it' if plan.unrecorded == 1 else 'them'} too)") if plan.unrecorded else ""
        print(f"nothing to re-embed: every video's vectors are of {model}{note}")
        return 1 if plan.missing else 0
    print(plan.describe(args.dry_run))
    for video in plan.videos:
        print(f"  {video['partition_key'][:34]:34} {video['status']:10} {','.join(video['was']) or model:16}"
              f"  {file_name(video['source_uri'])}")
    if plan.unrecorded and not args.all:
        print(f"({_videos(plan.unrecorded)} without faces predate the record of their model and are left; --all"
              " re-processes every video)")
    if args.dry_run:
        print("dry run: nothing re-processed")
        return 0
    keys = [v["partition_key"] for v in plan.videos]
    if args.backfill:
        code = _launch_backfill(settings, keys, model, args)
    else:
        code = _run_here(settings, store, plan, args.log_level)
    return 1 if code or plan.missing else 0


def _run_here(settings: Settings, store: Store, plan: ReembedPlan, log_level: str) -> int:
    """Each video a `process_video` run in this process (progress and a summary as `reid
    retry`), then the identities; says what is left of the old models."""
    from reid_pipeline.cli.execution import code_location
    from reid_pipeline.cli.runs import run_videos
    from reid_pipeline.ingest.sources import file_name

    before = {m["model"] for m in store.models()}
    defs, instance = code_location()
    instance.add_dynamic_partitions("videos", [v["partition_key"] for v in plan.videos])
    videos = [(file_name(v["source_uri"]) or v["partition_key"], v["partition_key"]) for v in plan.videos]
    failed = run_videos(defs, instance, store, videos, settings.sample_fps, log_level)
    after = plan_reembed(store, plan.model)
    gone = sorted(before - {m["model"] for m in store.models()} - {plan.model})
    line = f"\n{len(videos) - failed} re-embedded with {plan.model}, {failed} failed"
    if gone:
        line += f"; no vectors of {', '.join(gone)} are left: retired with {'its' if len(gone) == 1 else 'their'} identities"
    if after.stale:
        left = Counter(m for v in after.stale for m in v["was"])
        line += (f"; {_videos(len(after.stale))} still {'holds' if len(after.stale) == 1 else 'hold'} vectors of "
                 f"{', '.join(sorted(left))} (`reid status`; `reid reembed` again)")
    print(line)
    return 1 if failed else 0


def _launch_backfill(settings: Settings, keys: list[str], model: str, args: argparse.Namespace) -> int:
    """The videos as a backfill that the daemon runs (as `reid backfill` launches one), tagged
    with the model; followed with a progress bar with --wait."""
    import dagster as dg

    from reid_pipeline.cli.runs import launch_backfill

    instance = dg.DagsterInstance.get()
    instance.add_dynamic_partitions("videos", keys)
    tags = json.dumps({**(json.loads(args.tags) if args.tags else {}), REEMBED_TAG: model})
    batch = settings.backfill_batch if args.batch is None else args.batch
    print(f"the daemon's runs embed with the face backend of the environment it was started in (`reid up`, or the"
          f" deployment's): it must be {settings.face_backend} for {model}")
    return launch_backfill(instance, keys, batch, tags, args.wait)
