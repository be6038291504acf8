"""`reid gallery`: a small local web app to review, correct and forget identities.

Starlette + uvicorn (both come with Dagster's webserver) and jinja2 pages with
autoescaping; plain HTML forms, no JavaScript framework. It listens on 127.0.0.1 only.

Every action records a correction (`reid_pipeline.identities.corrections`), never an edit of the
identities, then asks for a recomputation through `Recompute` (the CLI hands in one that
launches Dagster's `rebuild_identities` job, so each recomputation is a run in the Dagster
UI; this module knows nothing of Dagster). The page waits for that run, then shows the
result.

Safety: the app shows faces, so it answers only its owner. Listening on 127.0.0.1 is not
enough (every local account reaches it): as notebook servers do, it requires a secret per
home (`home_secret`: made once, in `$REID_HOME/gallery_secret`, readable by its owner only).
`reid gallery` prints a URL carrying it (`/?token=...`); that request sets a cookie
(HttpOnly, SameSite=Strict) and every later one is let in by the cookie; any request
without either gets a 403 page saying to open the printed URL, and no face. A page of
another site open in the same browser could post to this app (CSRF): every form carries a
token made at start-up and a post without it is refused; requests whose Host is not the
loopback name are refused too (DNS rebinding).
"""

from __future__ import annotations

import base64
import binascii
import json
import mimetypes
import os
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol
from urllib.parse import quote, urlencode

import jinja2
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.middleware import Middleware
from starlette.middleware.trustedhost import TrustedHostMiddleware
from starlette.requests import Request
from starlette.responses import FileResponse, HTMLResponse, RedirectResponse, Response
from starlette.routing import Route

from reid_pipeline.faces.detection import chip_reader
from reid_pipeline.identities import corrections
from reid_pipeline.identities.matching import DEFAULT_METHOD
from reid_pipeline.ingest.sources import cached_copy, file_name, source_file
from reid_pipeline.presentation.pages import plural, spread
from reid_pipeline.storage import StoragePath, data_root
from reid_pipeline.store import Store

# the silhouette report's pictures the video page shows (faces: never in Dagster's metadata)
REPORT_PICTURES = {"contact_sheet.png", "silhouette_plot.png", "projection.png"}

# containers a browser plays by itself; for others (AVI, MKV, ...) the page shows the chips
PLAYABLE = {".mp4", ".m4v", ".webm", ".ogv", ".ogg", ".mov"}


class Recompute(Protocol):
    """How the app gets the identities recomputed (the CLI: a Dagster run)."""

    def start(self, reason: str) -> str:
        """Ask for a recomputation; returns the run id at once."""

    def state(self, run_id: str) -> str:
        """queued, started, success, failure or canceled."""

    def forget_traces(self, plan) -> int:
        """After a forget: remove what the orchestrator keeps of the person (runs whose event
        logs hold pictures); returns how many runs went."""


@dataclass
class GalleryContext:
    """What the app works on: the store, the data root, how to recompute, and (lazily) a
    face backend for search by photo."""

    store: Store
    data_root: StoragePath  # a folder or a bucket prefix (reid_pipeline.storage.data_root)
    recompute: Recompute
    backend: Callable[[], object]  # -> a FaceBackend (loaded on the first search)
    video_cache: Path | None = None  # where videos in a bucket were copied (settings' video_cache)
    dagster_ui: Callable[[], str | None] = lambda: None  # the Dagster UI's URL when it runs
    token: str = field(default_factory=lambda: secrets.token_urlsafe(24))  # the forms' CSRF token
    # who may see faces: the home's secret (`home_secret`), in the printed URL, then a cookie
    secret: str = field(default_factory=lambda: secrets.token_urlsafe(32))


SECRET_FILE = "gallery_secret"


def home_secret(home: Path) -> str:
    """The gallery's secret of this home: made once, kept in `<home>/gallery_secret` (mode
    0600). A file that others could read, or that another user owns, is no secret: it is
    replaced by a new one."""
    path = Path(home) / SECRET_FILE
    try:
        st = path.stat()
        if st.st_mode & 0o077 or st.st_uid != os.getuid():
            path.unlink()
        else:
            text = path.read_text().strip()
            if len(text) >= 32:
                return text
            path.unlink()
    except FileNotFoundError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    made = secrets.token_urlsafe(32)
    tmp = path.with_name(f".{SECRET_FILE}.{os.getpid()}.{secrets.token_hex(4)}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(made + "\n")
    try:
        os.link(tmp, path)  # two galleries starting at once: the first one's secret stays
    except FileExistsError:
        made = path.read_text().strip()
    finally:
        tmp.unlink()
    return made


def cookie_name(port: int | None) -> str:
    """The cookie of the gallery on `port` (browsers share cookies between the ports of a host)."""
    return f"reid_gallery_{port or 80}"


LOCKED = ("<!doctype html><title>reid gallery: locked</title><p>This gallery shows faces and answers only its owner."
          " Open the URL that <code>reid gallery</code> printed (it carries this home's secret, also in"
          " <code>$REID_HOME/gallery_secret</code>); this browser is then let in.</p>")


class SecretGate:
    """ASGI middleware: lets in a request carrying the home's secret, as `?token=` (then sets
    the cookie and redirects to the same page without it) or as the cookie; answers 403 to
    any other."""

    def __init__(self, app, secret: str) -> None:
        self.app, self.secret = app, secret.encode()

    def _is_secret(self, given: str | None) -> bool:
        return given is not None and secrets.compare_digest(given.encode(), self.secret)

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        request = Request(scope)
        name = cookie_name(request.url.port)
        if self._is_secret(request.query_params.get("token")):
            rest = [(k, v) for k, v in request.query_params.multi_items() if k != "token"]
            response = RedirectResponse(request.url.path + (f"?{urlencode(rest)}" if rest else ""), status_code=303)
            response.set_cookie(name, self.secret.decode(), httponly=True, samesite="strict", path="/")
            return await response(scope, receive, send)
        if self._is_secret(request.cookies.get(name)):
            return await self.app(scope, receive, send)
        return await HTMLResponse(LOCKED, status_code=403, headers={"Cache-Control": "no-store"})(scope, receive, send)


# the pages: reid_pipeline/presentation/templates/gallery_app/*.html
_ENV = jinja2.Environment(
    loader=jinja2.PackageLoader("reid_pipeline.presentation", "templates/gallery_app"),
    autoescape=True,
    undefined=jinja2.StrictUndefined,
)
_ENV.filters["plural"] = plural


def _chip_url(key: str, detection_id: int | None) -> str:
    return f"/chip/{quote(key)}/{detection_id}" if detection_id is not None else ""


def _ref_key(ref: dict) -> str:
    """A sighting reference as a dict key."""
    return json.dumps(ref, sort_keys=True)


def _spread(items: list, n: int = 4) -> list:
    """`n` of `items` spread evenly from the first to the last (`pages.spread`)."""
    return [items[i] for i in spread(len(items), n)]


def _local(url: str, default: str = "/") -> str:
    """`url` when it is a page of this app, else `default` (never another site)."""
    return url if url.startswith("/") and not url.startswith("//") else default


def suggestion_bands(model: str) -> tuple[float, float] | None:
    """(floor, link threshold) of `model`'s "same person as" suggestions, None for a model
    without calibrated thresholds. At or above the link threshold (the pair score at which
    the matcher links two well-seen sequences) a candidate is "likely the same person".
    The floor of "possibly" is the model's cluster threshold (threshold less its calibrated
    `cluster_gap`: the mean similarity at which the clustering still joins two groups), so
    "possibly" covers exactly the scores the calibration left within reach of a join
    (SFace 0.42-0.44, dlib 0.933-0.938); below it nothing is suggested, as the calibration
    put different people's scores there (docs/calibration.md)."""
    from reid_pipeline.identities.matching import match_settings_for

    try:
        settings = match_settings_for(model)
    except ValueError:
        return None
    return settings.cluster_threshold, settings.threshold


def create_app(ctx: GalleryContext) -> Starlette:
    """The Starlette app over `ctx`."""
    store = ctx.store
    chip = chip_reader(ctx.data_root)
    csrf = f'<input type="hidden" name="csrf" value="{ctx.token}">'

    def page(request: Request, template: str, status_code: int = 200, **values) -> HTMLResponse:
        values.setdefault("title", "identities")
        values.setdefault("msg", request.query_params.get("msg"))
        values.setdefault("err", request.query_params.get("err"))
        values.setdefault("undo", request.query_params.get("undo", ""))
        values.setdefault("here", request.url.path)
        return HTMLResponse(_ENV.get_template(f"{template}.html").render(csrf=csrf, dagster_ui=ctx.dagster_ui(), **values),
                            status_code=status_code)

    async def form(request: Request):
        data = await request.form()
        if not secrets.compare_digest(str(data.get("csrf", "")), ctx.token):
            return None
        return data

    def refused() -> Response:
        return HTMLResponse("refused: this form did not come from the gallery page (reload it)", status_code=403)

    def identities() -> list[dict]:
        """Every identity, most seen first, with its cover (`corrections.card_covers`: the face
        chosen for it, else its best face by quality)."""
        rows = store.identity_rows()
        faces = corrections.card_covers(store)
        for r in rows:
            r["partition_key"], r["best_detection_id"] = faces.get(r["identity_id"], (None, None))
        return rows

    def card(i: dict) -> dict:
        return {"identity_id": i["identity_id"], "name": i["label"] or i["identity_id"], "label": i["label"],
                "thumb": _chip_url(i["partition_key"], i["best_detection_id"]), "sightings": i["sequence_count"],
                "videos": i["video_count"], "hidden": i["hidden"]}

    def after(run_id: str, next_url: str, msg: str, undo: int | None = None) -> RedirectResponse:
        """Wait for the recomputation, then show `next_url` with `msg` (and an undo of correction `undo`)."""
        if undo is not None:
            next_url += ("&" if "?" in next_url else "?") + urlencode({"undo": undo})
        return RedirectResponse(f"/wait/{run_id}?{urlencode({'next': next_url, 'msg': msg})}", status_code=303)

    def faces_by_sequence(ids) -> dict[int, list[dict]]:
        """The usable faces of each sequence (row ids), in time order: detection_id, timestamp_s, box."""
        out: dict[int, list[dict]] = {}
        for f in store.faces_of_sequences(ids):
            out.setdefault(f["id"], []).append(f)
        return out

    def sightings_with_faces(ids, per: int = 4) -> list[dict]:
        """Sequences (row ids) in video and time order, with the file name and `per` chips spread over their faces."""
        faces = faces_by_sequence(ids)
        rows = store.sequences_with_source(ids)
        return [{**r, "file": file_name(r["source_uri"]),
                 "chips": [_chip_url(r["partition_key"], f["detection_id"]) for f in _spread(faces.get(r["id"], []), per)]}
                for r in rows]

    def side(title: str, ids, per: int = 3) -> dict:
        """One side of a confirmation or a correction: a title and its sightings' faces."""
        return {"title": title, "sightings": sightings_with_faces(ids, per)}

    def name_of(ident_id: str | None) -> str:
        """An identity's label, else its id."""
        rows = store.identity_rows(ident_id) if ident_id else []
        return (rows[0]["label"] or ident_id) if rows else (ident_id or "")

    async def index(request: Request):
        rows = identities()
        show_hidden = request.query_params.get("hidden") == "1"
        cards = [card(i) for i in rows if show_hidden or not i["hidden"]]
        unresolved = []
        for m in store.models():
            unresolved += [{**u, "file": file_name(u["source_uri"]), "thumb": _chip_url(u["partition_key"], u["best_detection_id"])}
                           for u in store.unresolved(m["model"])]
        return page(request, "index", cards=cards, unresolved=unresolved,
                    hidden_count=0 if show_hidden else sum(1 for i in rows if i["hidden"]))

    async def identity(request: Request):
        ident_id = request.path_params["identity_id"]
        known = identities()
        found = [i for i in known if i["identity_id"] == ident_id]
        forward = store.forward(ident_id) if not found else None
        if forward is not None and len(forward["live"]) == 1:  # an id that ended: what became of it, and its successor
            return RedirectResponse(f"/identity/{forward['live'][0]}?{urlencode({'msg': corrections.forward_sentence(forward)})}",
                                    status_code=303)
        if forward is not None:  # split (its successors' cards), forgotten or unresolved
            return page(request, "index", status_code=404 if not forward["live"] else 200, unresolved=[], hidden_count=0,
                        cards=[card(i) for i in known if i["identity_id"] in forward["live"]],
                        err=corrections.forward_sentence(forward))
        if not found:
            return page(request, "index", status_code=404, cards=[card(i) for i in known if not i["hidden"]], unresolved=[],
                        hidden_count=0, err=f"{ident_id} does not exist (any more): the identities were recomputed since")
        ident = found[0]
        model = ident["model"]
        rows = store.sightings(model, [ident_id])
        ids = [r["id"] for r in rows]
        by_seq = {k: [f["detection_id"] for f in v] for k, v in faces_by_sequence(ids).items()}
        pairs = store.pairs_touching(model, DEFAULT_METHOD, ids)
        info = {r["id"]: r for r in rows}
        inside = [p for p in pairs if p["sequence_a"] in info and p["sequence_b"] in info]
        bands = suggestion_bands(model)

        def band_of(score: float) -> str | None:
            """A pair score in words, as the suggestions say it: likely, possibly, or None (below the floor)."""
            if bands is None:
                return None
            return "likely" if score >= bands[1] else "possibly" if score >= bands[0] else None

        shown = []
        for r in rows:
            picks = _spread(by_seq.get(r["id"], []))
            best = next((p for p in inside if r["id"] in (p["sequence_a"], p["sequence_b"])), None)
            link = None
            if best is not None:
                other = info[best["sequence_b"] if best["sequence_a"] == r["id"] else best["sequence_a"]]
                link = {"score": best["score"], "linked": best["linked"], "file": file_name(other["source_uri"]),
                        "start_s": other["start_s"], "end_s": other["end_s"], "band": band_of(best["score"])}
            shown.append({**r, "file": file_name(r["source_uri"]), "link": link,
                          "chips": [(d, _chip_url(r["partition_key"], d)) for d in dict.fromkeys(picks)]})
        # the identities whose sightings score at or above the floor with these: the likely merges,
        # each with its best pair of sightings (pairs come best first)
        outside = [p for p in pairs if (p["sequence_a"] in info) != (p["sequence_b"] in info)
                   and bands is not None and p["score"] >= bands[0]]
        holder = store.identity_of(model, sorted({p["sequence_b"] if p["sequence_a"] in info else p["sequence_a"] for p in outside}))
        best_by_identity: dict[str, dict] = {}
        for p in outside:
            mine, theirs = (p["sequence_a"], p["sequence_b"]) if p["sequence_a"] in info else (p["sequence_b"], p["sequence_a"])
            if holder.get(theirs) is not None:
                best_by_identity.setdefault(holder[theirs], {**p, "mine": mine, "theirs": theirs})
        # never suggest an identity that a correction keeps apart from this one
        apart = {p for a, b in corrections.constraints_for(store, model, store.all_sequences(model), []).cannot_link
                 for p in ((a, b), (b, a))}
        kept_apart = {holder.get(b) for a, b in apart if a in info}
        everyone = {i["identity_id"]: i for i in known if i["model"] == model and i["identity_id"] != ident_id}
        ranked = [i for i in best_by_identity if i in everyone and i not in kept_apart][:5]
        best_face = {r["id"]: r for r in store.sequences_by_id(best_by_identity[i][k] for i in ranked for k in ("mine", "theirs"))}
        suggestions = []
        for i in ranked:
            pair = best_by_identity[i]
            mine, theirs = best_face[pair["mine"]], best_face[pair["theirs"]]
            suggestions.append({**card(everyone[i]), "score": pair["score"],
                                "band": band_of(pair["score"]),
                                "mine": _chip_url(mine["partition_key"], mine["best_detection_id"]),
                                "theirs": _chip_url(theirs["partition_key"], theirs["best_detection_id"])})
        return page(request, "identity", title=ident["label"] or ident_id, name=ident["label"] or ident_id, ident=ident,
                    cover=card(ident)["thumb"],
                    rows=shown, suggestions=suggestions, bands=bands, others=[card(i) for i in everyone.values()])

    async def sequence(request: Request):
        seq = int(request.path_params["sequence"])
        holder = store.identity_holding(seq)
        msg = request.query_params.get("msg")
        kept = {k: v for k, v in request.query_params.items() if k in ("msg", "undo")}
        query = f"?{urlencode(kept)}" if kept else ""
        if holder is None:
            exists = store.sequences_by_id([seq])
            note = "that sighting is now unresolved (listed at the foot of the page)" if exists else "that sighting is gone"
            return RedirectResponse(f"/?{urlencode({**kept, 'msg': (msg + '; ' if msg else '') + note})}", status_code=303)
        return RedirectResponse(f"/identity/{holder}{query}", status_code=303)

    async def merge(request: Request):
        """GET: both identities' faces and a confirm button; POST: record the merge, recompute."""
        ident_id = request.path_params["identity_id"]
        data = request.query_params if request.method == "GET" else await form(request)
        if data is None:
            return refused()
        other = str(data.get("other", ""))
        try:
            _, members = corrections.identity_sequences(store, ident_id)
            _, theirs = corrections.identity_sequences(store, other)
            if request.method == "GET":
                return page(request, "confirm", title="same person?", question=f"Are these one person: {name_of(ident_id)} and "
                            f"{name_of(other)}?", sides=[side(name_of(ident_id), members), side(name_of(other), theirs)],
                            explain="Their sightings become one identity at once (you can undo it afterwards, or on the"
                                    " corrections page).", action=f"/identity/{ident_id}/merge", fields={"other": other},
                            button="yes, the same person", cancel=f"/identity/{ident_id}")
            made = corrections.merge(store, [ident_id, other], source="gallery")
        except (KeyError, ValueError) as exc:
            return RedirectResponse(f"/identity/{ident_id}?{urlencode({'err': exc.args[0]})}", status_code=303)
        run = ctx.recompute.start(f"correction {made}: merge {ident_id} + {other}")
        return after(run, f"/sequence/{members[0]}", f"Merged {name_of(ident_id)} and {name_of(other)}.", undo=made)

    async def move_out(request: Request):
        """GET: the sighting's faces and the identity's other faces, a confirm button; POST (the
        form names the identity it was shown in, so a resubmit after the move does nothing):
        record the move, recompute, then say where the sighting went."""
        seq = int(request.path_params["sequence"])
        holder = store.identity_holding(seq)
        if request.method == "GET":
            if holder is None:
                return RedirectResponse(f"/sequence/{seq}", status_code=303)
            _, members = corrections.identity_sequences(store, holder)
            return page(request, "confirm", title="not this person?", question=f"Is this sighting not {name_of(holder)}?",
                        sides=[side("this sighting", [seq], 8), side(f"the other sightings of {name_of(holder)}",
                                                                     [m for m in members if m != seq])],
                        explain="The sighting leaves this identity: it joins whoever it matches best, or stays on its own.",
                        action=f"/sequence/{seq}/move-out", fields={"from": holder}, button="yes, not this person",
                        cancel=f"/identity/{holder}")
        data = await form(request)
        if data is None:
            return refused()
        origin = str(data.get("from", ""))
        if holder != origin:  # moved already (the form posted again)
            return RedirectResponse(f"/sequence/{seq}/moved?{urlencode({'from': origin})}", status_code=303)
        try:
            made = corrections.move_out(store, seq, source="gallery")
        except (KeyError, ValueError) as exc:
            return RedirectResponse(f"/identity/{holder}?{urlencode({'err': exc.args[0]})}", status_code=303)
        run = ctx.recompute.start(f"correction {made}: move a sighting out of {holder}")
        return after(run, f"/sequence/{seq}/moved?{urlencode({'from': holder})}",
                     f"Moved the sighting out of {name_of(holder)}.", undo=made)

    async def moved(request: Request):
        """Where a sighting moved out of an identity went: the identity holding it now, or unresolved."""
        seq = int(request.path_params["sequence"])
        origin = request.query_params.get("from", "")
        found = sightings_with_faces([seq], 8)
        holder = store.identity_holding(seq)
        alone = holder is not None and len(corrections.identity_sequences(store, holder)[1]) == 1
        return page(request, "moved", title="sighting moved", s=found[0] if found else None, holder=holder, alone=alone,
                    holder_name=name_of(holder), origin=origin, origin_name=name_of(origin))

    async def label(request: Request):
        data = await form(request)
        if data is None:
            return refused()
        ident_id = request.path_params["identity_id"]
        text = str(data.get("label", ""))[:80].strip()
        try:
            made = corrections.label(store, ident_id, text, source="gallery")
        except KeyError as exc:
            return RedirectResponse(f"/?{urlencode({'err': exc.args[0]})}", status_code=303)
        # a label needs no recomputation: it is the newest label of the identity holding its
        # sightings now, which is this one; the next recomputation gives it the same label
        store.set_label(ident_id, text or None)
        msg = f"Named {ident_id} \u201c{text}\u201d." if text else f"{ident_id} has no name now."
        back = _local(str(data.get("next", "")), f"/identity/{ident_id}")
        return RedirectResponse(f"{back}{'&' if '?' in back else '?'}{urlencode({'msg': msg, 'undo': made})}", status_code=303)

    async def set_cover(request: Request):
        """Show the chosen face on the identity's card (a `cover` correction; no recomputation)."""
        data = await form(request)
        if data is None:
            return refused()
        ident_id = request.path_params["identity_id"]
        try:
            made = corrections.cover(store, ident_id, int(data.get("sequence", -1)), int(data.get("detection", -1)), source="gallery")
        except (KeyError, ValueError) as exc:
            return RedirectResponse(f"/identity/{ident_id}?{urlencode({'err': exc.args[0]})}", status_code=303)
        return RedirectResponse(f"/identity/{ident_id}?{urlencode({'msg': 'That face is on the card now.', 'undo': made})}",
                                status_code=303)

    async def hide(request: Request):
        data = await form(request)
        if data is None:
            return refused()
        ident_id = request.path_params["identity_id"]
        made = corrections.hide(store, ident_id, source="gallery")
        run = ctx.recompute.start(f"correction {made}: hide {ident_id}")
        return after(run, "/", f"{ident_id} is hidden (correction #{made}; show hidden identities to bring it back).")

    async def unhide(request: Request):
        data = await form(request)
        if data is None:
            return refused()
        ident_id = request.path_params["identity_id"]
        _, members = corrections.identity_sequences(store, ident_id)
        for correction_id in store.corrections_with_detail("hide", f"hides {ident_id}"):
            store.delete_correction(correction_id)
        run = ctx.recompute.start(f"show {ident_id} again")
        return after(run, f"/sequence/{members[0]}", f"{ident_id} is shown again.")

    async def forget(request: Request):
        from reid_pipeline.identities.forget import carry_out, plan_identity

        ident_id = request.path_params["identity_id"]
        try:
            model, _ = corrections.identity_sequences(store, ident_id)
            plan = plan_identity(store, ctx.data_root, model, ident_id)
        except KeyError as exc:
            return RedirectResponse(f"/?{urlencode({'err': exc.args[0]})}", status_code=303)
        shown = sightings_with_faces(plan.sequences, 6)
        files = sorted({s["file"] for s in shown})
        what = {"identity_id": ident_id, "name": name_of(ident_id), "sightings": shown, "files": files, "faces": plan.faces,
                "plan": "\n".join(plan.describe())}
        if request.method == "GET":
            return page(request, "forget", title=f"forget {ident_id}", **what)
        data = await form(request)
        if data is None:
            return refused()
        if str(data.get("confirm", "")).strip().lower() != "forget":
            return page(request, "forget", title=f"forget {ident_id}", err="Nothing forgotten: type forget in the box to confirm.",
                        **what)
        counts = carry_out(store, ctx.data_root, plan)
        runs = ctx.recompute.forget_traces(plan)
        run = ctx.recompute.start(f"forget {ident_id}")
        return after(run, "/", f"Forgotten: {what['name']}'s {plural(counts['faces'], 'face')} in"
                               f" {plural(counts['sequences'], 'sighting')} of {plural(len(files), 'video')} are gone from the"
                               f" archive, with the {plural(runs, 'Dagster run')} whose logs held their pictures.")

    async def wait(request: Request):
        run_id = request.path_params["run_id"]
        state = ctx.recompute.state(run_id)
        next_url = request.query_params.get("next", "/")
        next_url = _local(next_url)  # only pages of this app
        msg = request.query_params.get("msg", "")
        if state == "success":
            sep = "&" if "?" in next_url else "?"
            return RedirectResponse(f"{next_url}{sep}{urlencode({'msg': msg + ' Identities recomputed.'})}", status_code=303)
        if state in ("failure", "canceled"):
            err = (f"{msg} The recomputation (Dagster run {run_id}) ended: {state}. The correction is kept and"
                   " applies at the next recomputation; the Dagster UI shows what went wrong.")
            return RedirectResponse(f"/?{urlencode({'err': err})}", status_code=303)
        ui = ctx.dagster_ui()
        return page(request, "wait", title="recomputing", run_id=run_id, state=state,
                    run_url=f"{ui}/runs/{run_id}" if ui else None, msg=msg)

    async def play(request: Request):
        seq = int(request.path_params["sequence"])
        rows = store.sequences_with_source([seq])
        if not rows:
            return RedirectResponse(f"/?{urlencode({'err': 'that sighting is gone'})}", status_code=303)
        s = rows[0]
        faces = faces_by_sequence([seq]).get(seq, [])
        size = store.get_video(s["partition_key"]) or {}
        boxes = {"width": size.get("width"), "height": size.get("height"),
                 "faces": [{"t": round(f["timestamp_s"], 3), "box": [round(float(v), 1) for v in f["box"]]} for f in faces]}
        video = _video_file(s["source_uri"], ctx.video_cache)
        suffix = Path(file_name(s["source_uri"])).suffix.lower()
        playable = video is not None and suffix in PLAYABLE
        reason = ("the video file is not on this machine" if video is None
                  else f"browsers cannot play {suffix or 'this'} files")
        return page(request, "player", title=file_name(s["source_uri"]), s=s, file=file_name(s["source_uri"]),
                    identity_id=store.identity_holding(seq), playable=playable, reason=reason,
                    frame=f"/frame/{seq}" if video is not None and faces else None,
                    boxes=boxes, faces=[{"chip": _chip_url(s["partition_key"], f["detection_id"]), "t": f["timestamp_s"]}
                                        for f in _spread(faces, 60)])

    async def frame_image(request: Request):
        """The whole frame of the sighting's middle face with its box drawn (JPEG): what the
        player shows of a video the browser cannot play."""
        seq = int(request.path_params["sequence"])
        faces = faces_by_sequence([seq]).get(seq, [])
        rows = store.sequences_with_source([seq])
        path = _video_file(rows[0]["source_uri"], ctx.video_cache) if rows and faces else None
        data = await run_in_threadpool(_frame_with_box, path, faces[len(faces) // 2]) if path is not None else None
        if data is None:
            return Response(status_code=404)
        return Response(data, media_type="image/jpeg", headers={"Cache-Control": "private, no-store"})

    async def video(request: Request):
        row = store.get_video(request.path_params["partition_key"])
        path = _video_file(row["source_uri"], ctx.video_cache) if row else None
        if path is None:
            return Response("no such video here", status_code=404)
        # FileResponse answers Range requests (206 Partial Content): the player seeks without downloading it all
        return FileResponse(path, media_type=mimetypes.guess_type(path.name)[0] or "application/octet-stream")

    async def video_page(request: Request):
        """A video's sightings with their faces and its silhouette report's contact sheet:
        what Dagster's metadata of the video links to (it holds no face itself)."""
        key = request.path_params["partition_key"]
        row = store.get_video(key)
        if row is None:
            return page(request, "index", status_code=404, cards=[card(i) for i in identities() if not i["hidden"]],
                        unresolved=[], hidden_count=0, err=f"no video {key} (any more)")
        seqs = store.sequences_at(key)
        by_seq = faces_by_sequence([s["id"] for s in seqs])
        holders: dict[int, str] = {}
        for model in {s["model"] for s in seqs}:  # one query per model, not one per sighting
            holders.update(store.identity_of(model, [s["id"] for s in seqs if s["model"] == model]))
        rows = []
        for s in seqs:
            picks = _spread([f["detection_id"] for f in by_seq.get(s["id"], [])])
            rows.append({**s, "identity_id": holders.get(s["id"]),
                         "chips": [_chip_url(key, d) for d in dict.fromkeys(picks)]})
        sheet = data_root(ctx.data_root) / "silhouette_report" / key / "contact_sheet.png"
        return page(request, "video", title=file_name(row["source_uri"]), file=file_name(row["source_uri"]), video=row,
                    rows=rows, contact_sheet=f"/report/{quote(key)}/contact_sheet.png" if sheet.exists() else None)

    async def report_picture(request: Request):
        key, name = request.path_params["partition_key"], request.path_params["name"]
        if name not in REPORT_PICTURES:
            return Response(status_code=404)
        path = data_root(ctx.data_root) / "silhouette_report" / key / name
        if "/" in key or key in ("", ".", "..") or not path.exists():
            return Response(status_code=404)
        return Response(path.read_bytes(), media_type="image/png", headers={"Cache-Control": "private, no-store"})

    async def chip_image(request: Request):
        data = chip(request.path_params["partition_key"], int(request.path_params["detection_id"]))
        if data is None:
            return Response(status_code=404)
        # not kept by the browser: a forgotten person's face must not outlive the forget there
        return Response(data, media_type="image/jpeg", headers={"Cache-Control": "private, no-store"})

    async def search(request: Request):
        """GET: the upload form. POST: the photo (an upload, or the kept copy of the last one
        with another face chosen) shown with its faces boxed; each face to search with; the
        identities matching the chosen face, each with its matching sightings."""
        if request.method == "GET":
            return page(request, "search", title="search by photo", searched=False, results=[], photo=None)
        data = await form(request)
        if data is None:
            return refused()
        upload = data.get("photo")
        raw = await upload.read() if hasattr(upload, "read") else b""
        try:
            if not raw:  # another face of the photo shown last (kept in the page, never here)
                raw = base64.b64decode(str(data.get("kept", "")), validate=True)
            photo = _photo_search(store, ctx.backend(), raw, int(data.get("face", -1) or -1))
        except (ValueError, binascii.Error) as exc:
            return page(request, "search", title="search by photo", searched=False, results=[], photo=None, err=str(exc))
        known = {i["identity_id"]: i for i in identities()}
        bands = suggestion_bands(ctx.backend().model_name)
        shown = []
        for r in photo.pop("results"):
            ident = known.get(r["identity_id"])
            files = {v["partition_key"]: file_name(v["source_uri"])
                     for v in store.video_rows(keys={x["partition_key"] for x in r["sightings"]})}
            shown.append({"href": f"/identity/{r['identity_id']}" if ident else "/",
                          "name": (ident["label"] or r["identity_id"]) if ident else "an unresolved sighting",
                          "thumb": card(ident)["thumb"] if ident else "", "score": r["score"],
                          "sightings": [{**x, "file": files.get(x["partition_key"], x["partition_key"])} for x in r["sightings"]]})
        return page(request, "search", title="search by photo", searched=True, results=shown, photo=photo,
                    threshold=bands[1] if bands else None)

    async def correction_list(request: Request):
        """Every correction in words, with the faces it names (up to 4 a side) and its status."""
        rows = store.correction_listing()
        sides = {r["id"]: r for r in store.corrections()}
        refs = [ref for r in sides.values() for ref in r["side_a"][:4] + r["side_b"][:4]]
        found: dict[str, int] = {}
        for m in store.models():  # the sighting each reference names now, in any model
            for ref, seq in zip(refs, corrections.resolve(store, m["model"], refs, store.all_sequences(m["model"]))):
                if seq is not None:
                    found.setdefault(_ref_key(ref), seq)
        best = {r["id"]: _chip_url(r["partition_key"], r["best_detection_id"]) for r in store.sequences_by_id(set(found.values()))}

        def chips(side: list[dict]) -> list[str]:
            return [best[found[_ref_key(r)]] for r in side[:4] if _ref_key(r) in found]

        for r in rows:
            a, b = sides[r["id"]]["side_a"], sides[r["id"]]["side_b"]
            r["words"] = {"must_link": "You said these are the same person",
                          "cannot_link": "You said this sighting is not this person" if len(a) == 1
                          else "You said these are not the same person",
                          "label": f"You named this person \u201c{r['value']}\u201d" if r["value"] else "You took this person's name away",
                          "hide": "You hid this person from the gallery",
                          "cover": "You chose this face for the person's card"}.get(r["kind"], r["note"])
            r["sides"] = [chips(a), chips(b)] if r["kind"] in ("must_link", "cannot_link") else [chips(a)]
        return page(request, "corrections", title="corrections", rows=rows)

    async def undo(request: Request):
        data = await form(request)
        if data is None:
            return refused()
        cid = int(request.path_params["correction"])
        if not store.delete_correction(cid):
            return RedirectResponse(f"/corrections?{urlencode({'err': f'no correction #{cid}'})}", status_code=303)
        run = ctx.recompute.start(f"undo correction {cid}")
        return after(run, _local(str(data.get("next", "")), "/corrections"), "Undone.")

    routes = [
        Route("/", index),
        Route("/identity/{identity_id}", identity),
        Route("/identity/{identity_id}/merge", merge, methods=["GET", "POST"]),
        Route("/identity/{identity_id}/label", label, methods=["POST"]),
        Route("/identity/{identity_id}/hide", hide, methods=["POST"]),
        Route("/identity/{identity_id}/cover", set_cover, methods=["POST"]),
        Route("/identity/{identity_id}/unhide", unhide, methods=["POST"]),
        Route("/identity/{identity_id}/forget", forget, methods=["GET", "POST"]),
        Route("/sequence/{sequence:int}", sequence),
        Route("/sequence/{sequence:int}/move-out", move_out, methods=["GET", "POST"]),
        Route("/sequence/{sequence:int}/moved", moved),
        Route("/play/{sequence:int}", play),
        Route("/frame/{sequence:int}", frame_image),
        Route("/video/{partition_key}", video),
        Route("/chip/{partition_key}/{detection_id:int}", chip_image),
        Route("/videos/{partition_key}", video_page),
        Route("/report/{partition_key}/{name}", report_picture),
        Route("/wait/{run_id}", wait),
        Route("/search", search, methods=["GET", "POST"]),
        Route("/corrections", correction_list),
        Route("/corrections/{correction:int}/undo", undo, methods=["POST"]),
    ]
    return Starlette(routes=routes, middleware=[Middleware(TrustedHostMiddleware, allowed_hosts=["127.0.0.1", "localhost"]),
                                                Middleware(SecretGate, secret=ctx.secret)])


def _video_file(source_uri: str, video_cache: Path | None) -> Path | None:
    """The video's bytes on this machine: the user's file, or the cached copy of a bucket object."""
    path = source_file(source_uri) or cached_copy(source_uri, video_cache)
    return path if path is not None and path.is_file() else None


def _frame_with_box(path: Path, face: dict) -> bytes | None:
    """The frame of `path` at the face's time (upright, as the pipeline read it), the face's
    box drawn in blue, as JPEG; None when no frame decodes there."""
    import cv2

    cap = cv2.VideoCapture(str(path), cv2.CAP_FFMPEG)
    try:
        cap.set(cv2.CAP_PROP_ORIENTATION_AUTO, 1)
        cap.set(cv2.CAP_PROP_POS_MSEC, max(float(face["timestamp_s"]) * 1000.0, 0.0))
        ok, image = cap.read()
    finally:
        cap.release()
    if not ok or image is None:
        return None
    x1, y1, x2, y2 = (round(float(v)) for v in face["box"])
    cv2.rectangle(image, (x1, y1), (x2, y2), (255, 143, 47), max(2, round(image.shape[1] / 320)))
    return cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 85])[1].tobytes()


PHOTO_SIDE = 1600  # a photo is searched (and kept in the page) at most this wide and high
PHOTO_BYTES = 700_000  # ... and at most this big as JPEG: its base64 fits the form's 1 MB field limit


def _photo_search(store: Store, backend, raw: bytes, face: int = -1) -> dict:
    """Search with one face of an uploaded photo (the largest unless `face` names another,
    as `reid search --photo`): {"kept" (the photo, JPEG, base64: the page keeps it for
    another face), "width", "height", "faces" ([{box, chip (data URL)}], largest first),
    "face" (the index searched with), "results" (`archive.search`)}. ValueError saying why
    there is no query."""
    import cv2
    import numpy as np

    from reid_pipeline.identities.archive import photo_faces, search
    from reid_pipeline.identities.matching import match_settings_for

    image = cv2.imdecode(np.frombuffer(raw, np.uint8), cv2.IMREAD_COLOR) if raw else None
    if image is None:
        raise ValueError("that file is not an image")
    scale = PHOTO_SIDE / max(image.shape[:2])
    if scale < 1:
        image = cv2.resize(image, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
    for quality in (90, 75, 60, 40):
        jpeg = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, quality])[1].tobytes()
        if len(jpeg) <= PHOTO_BYTES:
            break
    found = photo_faces(backend, image)  # ValueError: no face found
    face = face if 0 <= face < len(found) else 0

    def data_url(chip) -> str:
        return "data:image/jpeg;base64," + base64.b64encode(cv2.imencode(".jpg", chip)[1].tobytes()).decode()

    dims = {m["model"]: m["dim"] for m in store.models()}
    results = [] if backend.model_name not in dims else search(
        store, backend.model_name, dims[backend.model_name], backend.embed([found[face].chip]), match_settings_for(backend.model_name))
    return {"kept": base64.b64encode(jpeg).decode(), "width": image.shape[1], "height": image.shape[0], "face": face,
            "faces": [{"box": [float(v) for v in d.box], "chip": data_url(d.chip)} for d in found], "results": results}


def serve(ctx: GalleryContext, host: str = "127.0.0.1", port: int = 8765) -> None:
    """Run the app with uvicorn until interrupted."""
    import uvicorn

    uvicorn.run(create_app(ctx), host=host, port=port, log_level="warning")
