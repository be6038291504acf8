"""People's corrections of the identities, kept as constraints that every recomputation obeys.

Identities are recomputed from scratch (`archive.recompute_identities`), so a fix such as
"these two are one person" cannot be an edit of the last result: it is a row of the
`corrections` table that the clustering reads every time. A correction names *sightings*
by what survives re-running a video, never by a sequence row id (re-sequencing a video
makes new ids): the partition key, the sighting's time span and one face of it (its time
and box). At each recomputation every sighting is found again (`resolve`): the sequence
that now holds a face at that moment and place, or else the one sequence whose time span
overlaps the old one well.

Kinds (sides are lists of sightings):

- `must_link`: everything on both sides is one person (a merge of two identities);
- `cannot_link`: nothing of side A is the same person as anything of side B (a sighting
  moved out of an identity, two identities that are not the same person);
- `label`: the identity that holds most of side A is called `value` (kept locally);
- `hide`: the identity that holds most of side A is hidden from the gallery;
- `cover`: side A's one face (its time and box) is the face shown on the card of the
  identity that holds it (`covers`; the gallery reads it, no recomputation needed).

Two corrections may contradict each other (a merge, then one of its sightings moved out):
the newer one wins, and the older one is reported as `overridden` for the sightings
concerned. Facts beat corrections: two sightings on screen together in one video are never
one person. A correction none of whose sightings exists any more (its video was forgotten,
or re-sequenced so that nobody is there) is reported `stale`; one that lost some of them,
`partly_stale`. Every recomputation writes each correction's status and a sentence on it
to `correction_status`, which the identities' metadata, `reid identity corrections` and
the gallery app show. Nothing here knows of Dagster.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from reid_pipeline.store import Store

KINDS = ("must_link", "cannot_link", "label", "hide", "cover")
FACE_TOLERANCE_S = 0.5  # a face re-found within this time of the remembered one (2 sampled frames at 4 fps)
MIN_BOX_IOU = 0.3  # ... and overlapping its box this much (another backend's boxes differ a little)
MIN_SPAN_IOU = 0.5  # fallback: the one sequence whose time span overlaps the remembered one this much


# -- recording --------------------------------------------------------------------------
def sightings_of(store: Store, sequence_ids: Iterable[int]) -> list[dict]:
    """References to sequences (row ids) that survive re-running their videos: partition
    key, time span, and the time and box of the sequence's best face."""
    return list(sightings_by_id(store, sequence_ids).values())


def sightings_by_id(store: Store, sequence_ids: Iterable[int]) -> dict[int, dict]:
    """`sightings_of`, keyed by sequence row id (in the same order)."""
    rows = store.sighting_anchors(sequence_ids)
    return {r["id"]: {"partition_key": r["partition_key"], "start_s": round(r["start_s"], 3), "end_s": round(r["end_s"], 3),
                      "t": round(r["timestamp_s"] if r["timestamp_s"] is not None else (r["start_s"] + r["end_s"]) / 2, 3),
                      "box": [round(float(v), 1) for v in r["box"]] if r["box"] is not None else None} for r in rows}


def identity_sequences(store: Store, identity_id: str) -> tuple[str, list[int]]:
    """(model, sequence row ids) of an identity; an id that ended and was merged into one
    identity names that one (its forward); KeyError when there is none of that id, or it
    ended otherwise (split, forgotten: `forward_sentence` says what became of it)."""
    rows = store.identity_members(identity_id)
    if not rows:
        forward = store.forward(identity_id)
        if forward is not None and len(forward["live"]) == 1:
            return identity_sequences(store, forward["live"][0])
        raise KeyError(forward_sentence(forward) if forward is not None else f"no identity {identity_id!r}")
    return rows[0]["model"], [r["sequence_id"] for r in rows if r["model"] == rows[0]["model"]]


def record(store: Store, kind: str, side_a: Sequence[dict], side_b: Sequence[dict] = (), value: str | None = None,
           note: str = "", source: str = "cli") -> int:
    """Store one correction; returns its id. Sides are lists of `sightings_of` references.
    Idempotent: the same kind, sides and value as the newest correction (a form posted
    twice, a command repeated) is not stored again; that correction's id is returned."""
    if kind not in KINDS:
        raise ValueError(f"unknown correction {kind!r}; one of {', '.join(KINDS)}")
    if not side_a or (kind in ("must_link", "cannot_link") and not side_b):
        raise ValueError(f"a {kind} correction needs sightings on {'both sides' if kind.endswith('link') else 'side A'}")
    return store.add_correction(kind, side_a, side_b, value, note, source)


def forget_sequences(store: Store, model: str, sequence_ids: Iterable[int]) -> int:
    """A person is being forgotten: take their sightings (sequence row ids of `model`) out of
    every correction, and drop corrections left with nothing to say (a label of them, a
    merge of only them). Returns how many corrections changed. Call before the rows go."""
    gone = set(sequence_ids)
    corrections = store.corrections()
    if not corrections or not gone:
        return 0
    sequences = store.all_sequences(model)
    refs = [r for c in corrections for r in c["side_a"] + c["side_b"]]
    found = dict(zip(map(_ref_key, refs), resolve(store, model, refs, sequences)))
    sides: dict[int, tuple[list[dict], list[dict]]] = {}
    deleted: list[int] = []
    for c in corrections:
        a = [r for r in c["side_a"] if found[_ref_key(r)] not in gone]
        b = [r for r in c["side_b"] if found[_ref_key(r)] not in gone]
        if len(a) == len(c["side_a"]) and len(b) == len(c["side_b"]):
            continue
        empty = not a or (c["kind"] == "cannot_link" and not b) or (c["kind"] == "must_link" and len(a) + len(b) < 2)
        if empty:
            deleted.append(c["id"])
        else:
            sides[c["id"]] = (a, b)
    if sides or deleted:
        store.rewrite_corrections(sides, deleted)
    return len(sides) + len(deleted)


# -- the actions people take (gallery app and CLI) ----------------------------------------
def merge(store: Store, identity_ids: Sequence[str], source: str = "cli") -> int:
    """"These identities are one person": a must-link of all their sightings."""
    if len(set(identity_ids)) < 2:
        raise ValueError("merging needs two different identities")
    sides = [identity_sequences(store, i) for i in identity_ids]
    if len({model for model, _ in sides}) > 1:
        raise ValueError("identities of different face models cannot be merged")
    if len({tuple(seqs) for _, seqs in sides}) < len(sides):  # an id merged meanwhile forwards to the other
        raise ValueError(f"{' and '.join(identity_ids)} are one identity already")
    first, rest = sides[0][1], [s for _, seqs in sides[1:] for s in seqs]
    return record(store, "must_link", sightings_of(store, first), sightings_of(store, rest),
                  note=f"merge {' + '.join(identity_ids)}", source=source)


def move_out(store: Store, sequence_id: int, source: str = "cli") -> int:
    """"This sighting is not this person": a cannot-link between the sighting and the rest
    of the identity that holds it now."""
    holder = store.identity_holding(sequence_id)
    if holder is None:
        raise KeyError(f"sequence {sequence_id} belongs to no identity")
    _, members = identity_sequences(store, holder)
    others = [m for m in members if m != sequence_id]
    if not others:
        raise ValueError(f"{holder} has no other sighting to move this one away from")
    [ref] = sightings_of(store, [sequence_id])
    return record(store, "cannot_link", [ref], sightings_of(store, others),
                  note=f"{ref['partition_key']} {ref['start_s']:.1f}-{ref['end_s']:.1f} s is not {holder}",
                  source=source)


def not_same(store: Store, a: Sequence[int], b: Sequence[int], note: str, source: str = "cli") -> int:
    """"These sightings (sequence row ids) are not the same person as those"."""
    if set(a) & set(b):
        raise ValueError("a sighting cannot be on both sides")
    return record(store, "cannot_link", sightings_of(store, a), sightings_of(store, b), note=note, source=source)


def label(store: Store, identity_id: str, text: str, source: str = "cli") -> int:
    """Call an identity `text` (an empty text clears its label)."""
    _, members = identity_sequences(store, identity_id)
    return record(store, "label", sightings_of(store, members), value=text.strip(),
                  note=f"label {identity_id} {text.strip()!r}" if text.strip() else f"clear the label of {identity_id}",
                  source=source)


def hide(store: Store, identity_id: str, source: str = "cli") -> int:
    """Hide an identity from the gallery (undo the correction to show it again)."""
    _, members = identity_sequences(store, identity_id)
    return record(store, "hide", sightings_of(store, members), note=f"hide {identity_id}", source=source)


def cover(store: Store, identity_id: str, sequence_id: int, detection_id: int, source: str = "cli") -> int:
    """Show this face (a detection of one of the identity's sightings) on its card."""
    _, members = identity_sequences(store, identity_id)
    if sequence_id not in members:
        raise ValueError(f"that sighting is not part of {identity_id} (any more)")
    face = next((f for f in store.faces_of_sequences([sequence_id], accepted_only=False) if f["detection_id"] == detection_id),
                None)
    if face is None:
        raise ValueError("that face is not part of this sighting")
    [ref] = sightings_of(store, [sequence_id])
    ref.update(t=round(face["timestamp_s"], 3), box=[round(float(v), 1) for v in face["box"]])
    return record(store, "cover", [ref], note=f"cover of {identity_id}", source=source)


def covers(store: Store) -> dict[str, tuple[str, int]]:
    """The chosen cover of each identity that has one: identity id -> (partition key,
    detection id) of the face found again (as `resolve` finds faces), the newest choice first."""
    out: dict[str, tuple[str, int]] = {}
    for c in store.corrections("cover", newest_first=True):
        [ref] = c["side_a"]
        best = _face_of(ref, store.identity_faces_near(ref["partition_key"], ref["t"], FACE_TOLERANCE_S))
        if best is not None:
            out.setdefault(best["identity_id"], (ref["partition_key"], best["detection_id"]))
    return out


def card_covers(store: Store, model: str | None = None) -> dict[str, tuple[str, int]]:
    """The face on each identity's card (of `model`, else of every model), as both galleries
    show it: the face a person chose (`covers`), else the identity's best face by quality
    (the highest quality weight among its sightings' best faces). Identity id ->
    (partition key, detection id); an identity without a face is left out."""
    out = store.best_faces(model)
    out.update((ident, face) for ident, face in covers(store).items() if ident in out)
    return {ident: face for ident, face in out.items() if face[1] is not None}


def forward_sentence(forward: dict) -> str:
    """What became of an ended id (`Store.forward`), in words."""
    old, live = forward["old_id"], forward["live"]
    names = " and ".join(live) if len(live) <= 2 else ", ".join(live[:-1]) + " and " + live[-1]
    if not live:
        return {"forgotten": f"{old} is gone: its sightings were forgotten (or their videos re-run without them)",
                "unresolved": f"{old} is gone: its sightings are unresolved now (listed at the foot of the identities)"
                }.get(forward["reason"], f"{old} is gone: none of its sightings belongs to an identity now")
    if len(live) == 1:
        return f"{old} was merged into {names}" if forward["reason"] == "merged" else f"{old} is now {names}"
    return f"{old} was split: its sightings are now {names}"


# -- finding sightings again ------------------------------------------------------------
def _ref_key(ref: dict) -> str:
    return json.dumps(ref, sort_keys=True)


def _box_iou(a: Sequence[float], b: Sequence[float]) -> float:
    w = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    h = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = w * h
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def _face_of(ref: dict, faces: Sequence[dict]) -> dict | None:
    """The face (rows with box, timestamp_s and the sequence row id) that a reference's
    remembered face is now: the one nearest in time (within FACE_TOLERANCE_S) whose box
    overlaps the remembered box most, at least MIN_BOX_IOU; None when there is none."""
    near = [(_box_iou(f["box"], ref["box"]), -abs(f["timestamp_s"] - ref["t"]), -f["id"], i)
            for i, f in enumerate(faces) if abs(f["timestamp_s"] - ref["t"]) <= FACE_TOLERANCE_S]
    best = max(near, default=None)
    return faces[best[3]] if best is not None and best[0] >= MIN_BOX_IOU else None


def _span_iou(a0: float, a1: float, b0: float, b1: float) -> float:
    inter = max(0.0, min(a1, b1) - max(a0, b0))
    union = max(a1, b1) - min(a0, b0)
    return inter / union if union > 0 else float(a0 == b0)


def resolve(store: Store, model: str, refs: Sequence[dict], sequences: Sequence[dict]) -> list[int | None]:
    """The sequence row id (of `model`, among `sequences`) that holds each referenced
    sighting now, or None when it is gone. First by its face: the face of that video
    nearest in time (within FACE_TOLERANCE_S) whose box overlaps the remembered one; else
    by time span: the one sequence of the video overlapping the remembered span well."""
    partitions = sorted({r["partition_key"] for r in refs})
    faces: dict[str, list[dict]] = {}
    if partitions:
        for f in store.sequenced_faces(model, partitions):
            faces.setdefault(f["partition_key"], []).append(f)
    by_video: dict[str, list[dict]] = {}
    for s in sequences:
        by_video.setdefault(s["partition_key"], []).append(s)
    out: list[int | None] = []
    for ref in refs:
        found = None
        if ref.get("box"):
            face = _face_of(ref, faces.get(ref["partition_key"], []))
            found = face["id"] if face is not None else None
        if found is None:
            spans = [s["id"] for s in by_video.get(ref["partition_key"], ())
                     if _span_iou(s["start_s"], s["end_s"], ref["start_s"], ref["end_s"]) >= MIN_SPAN_IOU]
            found = spans[0] if len(spans) == 1 else None
        if found is not None and found not in {s["id"] for s in by_video.get(ref["partition_key"], ())}:
            found = None  # a face of another model's sequence, or one read meanwhile
        out.append(found)
    return out


# -- turning corrections into constraints -------------------------------------------------
@dataclass
class Constraints:
    """What the clustering of one model obeys, and how each correction fared."""

    must_link: list[tuple[int, int]] = field(default_factory=list)
    cannot_link: list[tuple[int, int]] = field(default_factory=list)
    marks: list[dict] = field(default_factory=list)  # label / hide: {id, kind, value, sequences}, newest first
    report: dict[int, tuple[str, str]] = field(default_factory=dict)  # correction id -> (status, detail)


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def constraints_for(store: Store, model: str, sequences: Sequence[dict], on_screen_together: Iterable[tuple[int, int]]) -> Constraints:
    """The corrections as must-link and cannot-link pairs of sequence row ids for the
    clustering of `model`, newest correction first, each checked against the facts
    (`on_screen_together`) and the newer corrections."""
    rows = store.corrections(newest_first=True)
    out = Constraints()
    if not rows:
        return out
    refs = [r for c in rows for r in c["side_a"] + c["side_b"]]
    found = dict(zip(map(_ref_key, refs), resolve(store, model, refs, sequences)))
    cannot = {(min(a, b), max(a, b)) for a, b in on_screen_together}
    root: dict[int, int] = {}
    members: dict[int, set[int]] = {}

    def find(x: int) -> int:
        root.setdefault(x, x)
        members.setdefault(x, {x})
        while root[x] != x:
            x = root[x]
        return x

    def conflict(x: int, y: int) -> bool:
        return any((min(p, q), max(p, q)) in cannot for p in members[find(x)] for q in members[find(y)])

    for c in rows:
        side_a = [found[_ref_key(r)] for r in c["side_a"]]
        side_b = [found[_ref_key(r)] for r in c["side_b"]]
        total = len(side_a) + len(side_b)
        missing = sum(1 for s in side_a + side_b if s is None)
        a = sorted({s for s in side_a if s is not None})
        b = sorted({s for s in side_b if s is not None})
        gone = f"{missing} of its {total} sightings {'is' if missing == 1 else 'are'} gone (video forgotten or re-sequenced)"
        if c["kind"] in ("label", "hide", "cover"):
            if not a:
                out.report[c["id"]] = ("stale", f"none of its {_plural(total, 'sighting')} exists any more")
            else:
                out.marks.append({"id": c["id"], "kind": c["kind"], "value": c["value"], "sequences": a, "missing": missing,
                                  "gone": gone})
            continue
        if c["kind"] == "must_link":
            together = sorted(set(a) | set(b))
            if len(together) < 2:
                out.report[c["id"]] = ("stale", f"fewer than two of its {_plural(total, 'sighting')} exist any more")
                continue
            # the sighting at odds with most of the others is tried last (a merge, then one of
            # its sightings moved out: the others stay merged)
            together.sort(key=lambda s: (sum(conflict(s, o) for o in together if o != s), s))
            first, left_out = together[0], []
            for s in together[1:]:
                if find(s) == find(first):
                    continue
                if conflict(s, first):
                    left_out.append(s)
                    continue
                rs, rf = find(s), find(first)
                root[rs] = rf
                members[rf] |= members.pop(rs)
                out.must_link.append((first, s))
            if len(left_out) == len(together) - 1:
                out.report[c["id"]] = ("overridden", "no two of its sightings may be one person any more (a newer correction,"
                                                     " or on screen together)")
            elif left_out:
                out.report[c["id"]] = ("overridden", f"{_plural(len(left_out), 'sighting')} left out: a newer correction"
                                                     " says otherwise, or on screen together" + (f"; {gone}" if missing else ""))
            elif missing:
                out.report[c["id"]] = ("partly_stale", gone)
            else:
                out.report[c["id"]] = ("applied", f"{_plural(len(together), 'sighting')} held together")
        else:  # cannot_link
            if not a or not b:
                out.report[c["id"]] = ("stale", f"one of its sides has no sighting left ({gone})")
                continue
            kept = overruled = 0
            for x in a:
                for y in b:
                    if x == y or find(x) == find(y):
                        overruled += 1
                        continue
                    cannot.add((min(x, y), max(x, y)))
                    out.cannot_link.append((x, y))
                    kept += 1
            if not kept:
                out.report[c["id"]] = ("overridden", "a newer correction says they are one person")
            elif overruled:
                out.report[c["id"]] = ("overridden", f"{_plural(overruled, 'pair')} of sightings kept together by a newer correction")
            elif missing:
                out.report[c["id"]] = ("partly_stale", gone)
            else:
                out.report[c["id"]] = ("applied", f"{_plural(kept, 'pair')} of sightings kept apart")
    return out


def apply_marks(constraints: Constraints, identity_of: dict[int, str]) -> dict[str, dict]:
    """Labels and hides, given where each sequence ended up (sequence row id -> identity
    id): identity id -> {"label", "hidden"}. The newest label of an identity wins; each
    mark's status goes into `constraints.report`."""
    out: dict[str, dict] = {}
    for mark in constraints.marks:  # newest first
        votes: dict[str, int] = {}
        for s in mark["sequences"]:
            if s in identity_of:
                votes[identity_of[s]] = votes.get(identity_of[s], 0) + 1
        if not votes:
            constraints.report[mark["id"]] = ("stale", "its sightings belong to no identity now (unresolved)")
            continue
        target = min(votes, key=lambda i: (-votes[i], i))
        entry = out.setdefault(target, {"label": None, "hidden": False})
        if mark["kind"] == "hide":
            entry["hidden"] = True
            status = ("applied", f"hides {target}")
        elif mark["kind"] == "cover":
            status = ("overridden", f"a newer cover of {target} wins") if "covered" in entry else (
                "applied", f"a face of {target} on its card")
            entry["covered"] = True
        elif entry["label"] is None and "labelled" not in entry:
            entry["labelled"] = True
            entry["label"] = mark["value"] or None  # an empty label clears older ones
            status = ("applied", f"labels {target}" if mark["value"] else f"clears the label of {target}")
        else:
            status = ("overridden", f"a newer label of {target} wins")
        if mark["missing"] and status[0] == "applied":
            status = ("partly_stale", f"{status[1]}; {mark['gone']}")
        constraints.report[mark["id"]] = status
    for entry in out.values():
        entry.pop("labelled", None)
        entry.pop("covered", None)
    return out
