"""A static HTML gallery of identities: an index page of faces and one page per identity
with its sightings per video (time spans and a face of each sighting)."""

from __future__ import annotations

import html
import shutil
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from urllib.parse import unquote


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def _file_name(sighting: dict) -> str:
    uri = sighting.get("source_uri") or ""
    return unquote(uri.rstrip("/").rsplit("/", 1)[-1]) or sighting["partition_key"]

CSS = """
body{font-family:system-ui,sans-serif;margin:24px;background:#fafafa;color:#222}
h1{font-size:22px} h2{font-size:17px;margin-top:28px}
.grid{display:flex;flex-wrap:wrap;gap:14px}
.card{background:#fff;border:1px solid #ddd;border-radius:8px;padding:8px;width:150px;text-align:center;text-decoration:none;color:#222}
.card img{width:128px;height:128px;object-fit:cover;border-radius:6px}
.meta{font-size:12px;color:#555}
table{border-collapse:collapse;background:#fff} td,th{border:1px solid #ddd;padding:6px 10px;font-size:13px;vertical-align:middle}
td img{width:72px;height:72px;object-fit:cover;border-radius:4px}
"""


def _page(title: str, body: str) -> str:
    return (
        f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
        f"<style>{CSS}</style></head><body>{body}</body></html>"
    )


def write_gallery(
    folder: str | Path,
    identities: list[dict],
    sightings: list[dict],
    chip: Callable[[str, int], bytes | None],
    title: str = "reid-pipeline identities",
    unresolved: list[dict] = (),
) -> Path:
    """Write `index.html`, `<identity>.html` and face thumbnails under `folder`.

    `identities` rows: identity_id, sequence_count, video_count, face_count, best_sequence;
    `sightings` rows: identity_id, id (sequence row), partition_key, sequence_id, start_s,
    end_s, face_count, best_detection_id; `unresolved` rows: the same less identity_id, plus
    reason; `chip(partition_key, detection_id)` gives a JPEG."""
    folder = Path(folder)
    thumbs = folder / "faces"
    # the gallery is rebuilt whole: pages and faces of identities that no longer exist go
    if thumbs.exists():
        shutil.rmtree(thumbs)
    for old in folder.glob("*.html"):
        old.unlink()
    thumbs.mkdir(parents=True, exist_ok=True)
    by_identity: dict[str, list[dict]] = defaultdict(list)
    for s in sightings:
        by_identity[s["identity_id"]].append(s)

    def thumb(s: dict) -> str:
        name = f"{s['partition_key']}_{s['best_detection_id']}.jpg"
        path = thumbs / name
        if not path.exists():
            data = chip(s["partition_key"], s["best_detection_id"])
            if data is None:
                return ""
            path.write_bytes(data)
        return f"faces/{name}"

    cards = []
    for ident in identities:
        rows = by_identity.get(ident["identity_id"], [])
        if not rows:
            continue
        best = next((s for s in rows if s["id"] == ident["best_sequence"]), rows[0])
        page = f"{ident['identity_id']}.html"
        cards.append(
            f"<a class='card' href='{page}'><img src='{thumb(best)}' alt='face of {ident['identity_id']}'>"
            f"<div>{html.escape(ident['identity_id'])}</div><div class='meta'>{_plural(ident['video_count'], 'video')}, "
            f"{_plural(ident['sequence_count'], 'sighting')}, {_plural(ident['face_count'], 'face')}</div></a>"
        )
        table = ["<table><tr><th>face</th><th>video</th><th>sequence</th><th>time</th><th>faces</th></tr>"]
        for video, group in sorted(_group(rows).items()):
            for s in group:
                table.append(
                    f"<tr><td><img src='{thumb(s)}' alt='sighting'></td><td>{html.escape(_file_name(s))}"
                    f"<div class='meta'>{html.escape(video)}</div></td>"
                    f"<td>{s['sequence_id']}</td><td>{s['start_s']:.1f}-{s['end_s']:.1f} s</td><td>{s['face_count']}</td></tr>"
                )
        table.append("</table>")
        (folder / page).write_text(
            _page(
                ident["identity_id"],
                f"<p><a href='index.html'>all identities</a></p><h1>{html.escape(ident['identity_id'])}</h1>"
                f"<p class='meta'>seen in {_plural(ident['video_count'], 'video')}, "
                f"{_plural(ident['sequence_count'], 'sighting')}</p>"
                + "".join(table),
            )
        )
    loose = [
        f"<div class='card'><img src='{thumb(s)}' alt='unresolved sighting'><div>{html.escape(_file_name(s))}</div>"
        f"<div class='meta'>sequence {s['sequence_id']}, {s['start_s']:.1f}-{s['end_s']:.1f} s<br>"
        f"{html.escape(s['reason'])}</div></div>"
        for s in unresolved
    ]
    unresolved_html = (
        f"<h2>Unresolved sequences ({len(loose)})</h2><p class='meta'>too short to stand as a person of their own "
        f"and not reliably linked to anyone</p><div class='grid'>{''.join(loose)}</div>" if loose else ""
    )
    (folder / "index.html").write_text(
        _page(title, f"<h1>{html.escape(title)}</h1><p class='meta'>{len(cards)} identities, people seen in most "
                     f"videos first</p><div class='grid'>{''.join(cards)}</div>{unresolved_html}")
    )
    return folder / "index.html"


def _group(rows: list[dict]) -> dict[str, list[dict]]:
    out: dict[str, list[dict]] = defaultdict(list)
    for s in rows:
        out[s["partition_key"]].append(s)
    return out
