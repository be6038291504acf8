"""Re-identification across the archive: match a video's sequences against every other
sequence, recompute identities, and answer "where else does this person appear?"."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from reid_pipeline.faces.base import l2_normalise
from reid_pipeline.identities import corrections
from reid_pipeline.identities.clustering import Link, carry_ids, cluster, identity_id
from reid_pipeline.identities.matching import MatchSettings, similarity, spans_overlap
from reid_pipeline.store import Store, as_array


@dataclass
class MatchReport:
    queried: int = 0  # sequences of the video searched (every one with at least min_faces usable faces)
    candidates: int = 0  # pairs scored
    links: list[dict] = field(default_factory=list)  # pairs at or above the threshold
    rows: list[dict] = field(default_factory=list)  # every scored pair
    seconds: float = 0.0


def match_partition(store: Store, partition_key: str, model: str, dim: int, settings: MatchSettings) -> MatchReport:
    """Score this video's sequences against their nearest sequences anywhere (HNSW on
    templates, then the set-to-set `settings.method` over both sequences' faces), skip
    pairs that overlap in time within the video, and store every scored pair. Short and
    small sequences are matched too; they link only with a margin above the threshold
    (`MatchSettings.evidence_score`)."""
    t0 = time.perf_counter()
    report = MatchReport()
    own = [s for s in store.sequences_for(partition_key, model) if s["face_count"] >= settings.min_faces]
    report.queried = len(own)
    pairs: dict[tuple[int, int], tuple[dict, dict, float]] = {}
    nearest = store.nearest_sequences_many(
        model, dim, [as_array(s["template"]) for s in own], settings.candidates + 1, settings.min_faces
    )
    for seq, candidates in zip(own, nearest):
        for cand in candidates:
            if cand["id"] == seq["id"]:
                continue
            if cand["partition_key"] == partition_key and spans_overlap(
                seq["start_frame"], seq["end_frame"], cand["start_frame"], cand["end_frame"]
            ):
                continue  # on screen together: two people
            a, b = sorted((seq, cand), key=lambda s: s["id"])
            pairs[(a["id"], b["id"])] = (a, b, float(cand["template_similarity"]))
    faces = store.sequence_faces(sorted({i for pair in pairs for i in pair}))
    for (ia, ib), (a, b, template_sim) in sorted(pairs.items()):
        if ia not in faces or ib not in faces:
            continue
        (va, wa), (vb, wb) = faces[ia], faces[ib]
        score = similarity(settings.method, va, vb, wa, wb)
        row = {
            "sequence_a": ia, "sequence_b": ib, "partition_a": a["partition_key"], "partition_b": b["partition_key"],
            "score": score, "template_similarity": template_sim,
            "linked": settings.evidence_score(score, a, b) >= settings.threshold,
        }
        report.rows.append(row)
        if row["linked"]:
            report.links.append(row)
    report.candidates = len(report.rows)
    store.upsert_matches(model, settings.method, report.rows)
    report.seconds = time.perf_counter() - t0
    return report


def pair_scorer(store: Store, method: str):
    """score(a, b) for sequence row ids, loading faces on demand (cached)."""
    cache: dict[int, tuple[np.ndarray, np.ndarray]] = {}

    def score(a: int, b: int) -> float:
        missing = [i for i in (a, b) if i not in cache]
        if missing:
            cache.update(store.sequence_faces(missing))
        if a not in cache or b not in cache:
            return 0.0
        return similarity(method, cache[a][0], cache[b][0], cache[a][1], cache[b][1])

    return score


@dataclass
class IdentityResult:
    identities: list[dict]  # stored rows, plus "cover": the card's face (partition key, detection id) or None
    members: list[tuple[str, int]]  # (identity_id, sequence row id)
    seconds: float
    unresolved: list[tuple[int, str]] = field(default_factory=list)  # (sequence row id, reason)
    corrections: dict[int, tuple[str, str]] = field(default_factory=dict)  # correction id -> (status, detail)
    forwards: list[dict] = field(default_factory=list)  # ids that ended: {old_id, new_ids, reason}


def cannot_links(sequences: list[dict]) -> list[tuple[int, int]]:
    """Pairs of sequences on screen together in one video: two people, never one identity."""
    by_video: dict[str, list[dict]] = {}
    for s in sequences:
        by_video.setdefault(s["partition_key"], []).append(s)
    out = []
    for seqs in by_video.values():
        seqs = sorted(seqs, key=lambda s: (s["start_frame"], s["id"]))
        for i, a in enumerate(seqs):
            for b in seqs[i + 1:]:
                if b["start_frame"] > a["end_frame"]:
                    break
                out.append((a["id"], b["id"]))
    return out


def recompute_identities(store: Store, model: str, settings: MatchSettings) -> IdentityResult:
    """Cluster every sequence of `model` from the stored scored pairs (scores less the
    evidence margins of short and small sequences), obeying people's corrections
    (`reid_pipeline.identities.corrections`: merges, splits, labels, hides); replace the tables and
    each correction's status. A short sequence that ends up alone is listed as unresolved
    rather than passed off as a person."""
    t0 = time.perf_counter()
    sequences = store.all_sequences(model)
    info = {s["id"]: s for s in sequences}
    raw = pair_scorer(store, settings.method)

    def evidence(a: int, b: int, score: float) -> float:
        return settings.evidence_score(score, info[a], info[b])

    pairs = [Link(r["sequence_a"], r["sequence_b"], evidence(r["sequence_a"], r["sequence_b"], r["score"]))
             for r in store.scored_pairs(model, settings.method) if r["sequence_a"] in info and r["sequence_b"] in info]
    together = cannot_links(sequences)
    constraints = corrections.constraints_for(store, model, sequences, together)
    labels = cluster([s["id"] for s in sequences], pairs, settings.threshold, lambda a, b: evidence(a, b, raw(a, b)),
                     cluster_threshold=settings.cluster_threshold, cannot_link=together + constraints.cannot_link,
                     must_link=constraints.must_link)
    groups: dict[int, list[dict]] = {}
    for seq in sequences:
        groups.setdefault(labels[seq["id"]], []).append(seq)
    identities, members, unresolved, people = [], [], [], []
    for group in groups.values():
        if len(group) == 1 and group[0]["face_count"] < settings.short_faces:
            n = group[0]["face_count"]
            unresolved.append((group[0]["id"], f"{n} usable face{'s' if n != 1 else ''}, linked to nobody"))
            continue
        people.append(group)
    # each cluster keeps the id of the previous identity it shares most sightings with
    ids, forwards = carry_ids([[s["id"] for s in g] for g in people],
                              [identity_id([f"{s['partition_key']}:{s['sequence_number']:06d}" for s in g]) for g in people],
                              previous_identities(store, model, sequences))
    for ident, group in zip(ids, people):
        best = max(group, key=lambda s: (s["face_count"] * (s["mean_quality"] or 0), -s["id"]))
        identities.append({
            "identity_id": ident,
            "sequence_count": len(group),
            "video_count": len({s["partition_key"] for s in group}),
            "face_count": sum(s["face_count"] for s in group),
            "best_sequence": best["id"],
        })
        members.extend((ident, s["id"]) for s in group)
    identities.sort(key=lambda i: (-i["video_count"], -i["sequence_count"], i["identity_id"]))
    marks = corrections.apply_marks(constraints, dict((seq, ident) for ident, seq in members))
    for ident in identities:
        ident.update(marks.get(ident["identity_id"], {"label": None, "hidden": False}))
    refs = corrections.sightings_by_id(store, [seq for _, seq in members])
    store.replace_identities(model, identities, members, unresolved,
                             sightings=[(ident, seq, refs[seq]) for ident, seq in members if seq in refs],
                             forwards=[(f.old_id, f.new_ids, f.reason) for f in forwards])
    store.replace_correction_status(model, constraints.report)
    faces = corrections.card_covers(store, model)  # the face on each card, as the live gallery shows it
    for ident in identities:
        ident["cover"] = faces.get(ident["identity_id"])
    return IdentityResult(identities, members, time.perf_counter() - t0, unresolved, constraints.report,
                          [{"old_id": f.old_id, "new_ids": list(f.new_ids), "reason": f.reason} for f in forwards])


def previous_identities(store: Store, model: str, sequences: list[dict]) -> dict[str, set[int]]:
    """The identities of the last recomputation, each as the sequence row ids (among
    `sequences`) that hold its sightings now: a sequence still there as it was, else the one
    its reference finds again (`corrections.resolve`: a re-run video makes new rows)."""
    current = {s["id"] for s in sequences}
    out = store.members_by_identity(model)  # before the first recomputation with sightings
    kept = store.previous_sightings(model)
    lost = [r for r in kept if r["sequence_id"] not in current]
    for r, found in zip(lost, corrections.resolve(store, model, [r["sighting"] for r in lost], sequences)):
        out.setdefault(r["identity_id"], set())
        if found is not None:
            out[r["identity_id"]].add(found)
    for r in kept:
        out.setdefault(r["identity_id"], set())
        if r["sequence_id"] in current:
            out[r["identity_id"]].add(r["sequence_id"])
    return {i: {s for s in seqs if s in current} for i, seqs in out.items()}


def search(store: Store, model: str, dim: int, vectors: np.ndarray, settings: MatchSettings, exclude: set[int] = frozenset()) -> list[dict]:
    """Identities whose sequences match the query faces (`vectors`, one or more unit
    embeddings of one person), best first, each with its matching sightings and scores. A
    query of few faces (one photo) needs the same margin as a short sequence."""
    vectors = l2_normalise(np.atleast_2d(vectors))
    template = l2_normalise(vectors.mean(axis=0)[None])[0]
    candidates = [c for c in store.nearest_sequences(model, dim, template, settings.candidates) if c["id"] not in exclude]
    faces = store.sequence_faces([c["id"] for c in candidates])
    scored = []
    for cand in candidates:
        if cand["id"] in faces:
            va, wa = faces[cand["id"]]
            score = similarity(settings.method, vectors, va, None, wa)
            if settings.evidence_score(score, {"face_count": len(vectors)}, cand) >= settings.threshold:
                scored.append({**cand, "score": score})
    identity = store.identity_of(model, [c["id"] for c in scored])
    results: dict[str, dict] = {}
    for cand in sorted(scored, key=lambda c: -c["score"]):
        ident = identity.get(cand["id"], f"sequence-{cand['id']}")
        entry = results.setdefault(ident, {"identity_id": ident, "score": cand["score"], "sightings": []})
        entry["sightings"].append(
            {k: cand[k] for k in ("partition_key", "sequence_number", "start_s", "end_s", "face_count", "score")}
        )
    return sorted(results.values(), key=lambda r: -r["score"])


def photo_faces(backend, image_bgr: np.ndarray) -> list:
    """The faces of a photo (the backend's detections), the largest first; ValueError when
    there is none."""
    found = sorted(backend.detect(image_bgr), key=lambda d: -(d.box[2] - d.box[0]) * (d.box[3] - d.box[1]))
    if not found:
        raise ValueError("no face found in the photo")
    return found


def photo_query(backend, image_bgr: np.ndarray) -> np.ndarray:
    """The embedding of the largest face in a photo, as a (1, dim) query."""
    return backend.embed([photo_faces(backend, image_bgr)[0].chip])
