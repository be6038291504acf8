"""A static HTML gallery of identities: an index page of faces and one page per identity
with its sightings per video (time spans and a face of each sighting)."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable

from reid_pipeline.ingest.sources import file_name
from reid_pipeline.presentation.pages import render
from reid_pipeline.storage import StoragePath, data_root, mkdirs, remove, write_bytes, write_text


def _file_name(sighting: dict) -> str:
    return file_name(sighting.get("source_uri") or "") or sighting["partition_key"]


def write_gallery(
    folder: StoragePath,
    identities: list[dict],
    sightings: list[dict],
    chip: Callable[[str, int], bytes | None],
    title: str = "reid-pipeline identities",
    unresolved: list[dict] = (),
) -> StoragePath:
    """Write `index.html`, `<identity>.html` and face thumbnails under `folder` (a local
    folder, or a prefix in a bucket: `storage.data_root`).

    `identities` rows: identity_id, sequence_count, video_count, face_count, best_sequence,
    and cover (the card's face: (partition_key, detection_id), as `corrections.card_covers`
    picks it for the live gallery too; without it, the best sequence's best face);
    `sightings` rows: identity_id, id (sequence row), partition_key, sequence_number, start_s,
    end_s, face_count, best_detection_id; `unresolved` rows: the same less identity_id, plus
    reason; `chip(partition_key, detection_id)` gives a JPEG."""
    folder = data_root(folder)
    thumbs = folder / "faces"
    # the gallery is rebuilt whole: pages and faces of identities that no longer exist go
    remove(thumbs)
    for old in list(folder.glob("*.html")):
        remove(old)
    mkdirs(thumbs)
    written: set[str] = set()
    by_identity: dict[str, list[dict]] = defaultdict(list)
    for s in sightings:
        by_identity[s["identity_id"]].append(s)

    def thumb(s: dict) -> str:
        name = f"{s['partition_key']}_{s['best_detection_id']}.jpg"
        if name not in written:
            data = chip(s["partition_key"], s["best_detection_id"])
            if data is None:
                return ""
            write_bytes(thumbs / name, data)
            written.add(name)
        return f"faces/{name}"

    cards = []
    for ident in identities:
        rows = by_identity.get(ident["identity_id"], [])
        if not rows:
            continue
        best = next((s for s in rows if s["id"] == ident["best_sequence"]), rows[0])
        if ident.get("cover"):
            best = {"partition_key": ident["cover"][0], "best_detection_id": ident["cover"][1]}
        page = f"{ident['identity_id']}.html"
        cards.append({"page": page, "thumb": thumb(best), "identity_id": ident["identity_id"], "label": ident.get("label"),
                      "videos": ident["video_count"], "sightings": ident["sequence_count"], "faces": ident["face_count"]})
        ordered = [s for _, group in sorted(_group(rows).items()) for s in group]
        write_text(folder / page, render(
            "identity", title=ident["identity_id"], videos=ident["video_count"],
            rows=[{**s, "thumb": thumb(s), "file": _file_name(s)} for s in ordered],
        ))
    loose = [{**s, "thumb": thumb(s), "file": _file_name(s)} for s in unresolved]
    write_text(folder / "index.html", render("gallery", title=title, cards=cards, unresolved=loose))
    return folder / "index.html"


def _group(rows: list[dict]) -> dict[str, list[dict]]:
    out: dict[str, list[dict]] = defaultdict(list)
    for s in rows:
        out[s["partition_key"]].append(s)
    return out


def remove_galleries(folder: StoragePath, keep: set[str]) -> list[str]:
    """Delete the galleries under `folder` (one sub-folder per model) of the models not in
    `keep`: a retired model's faces must not stay published. Returns the names removed."""
    folder = data_root(folder)
    if not folder.exists():
        return []
    gone = sorted(child.name for child in folder.iterdir() if child.name not in keep)
    for name in gone:
        remove(folder / name)
    return gone
