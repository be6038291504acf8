"""Anonymous identities from the match graph, recomputed deterministically.

Incremental clustering (assign each newcomer to the nearest existing cluster) depends on
the order videos arrive in. Here the whole graph is clustered from scratch each time, and
the result depends only on the set of sequences and scored pairs, never on their order:

- links (pairs at or above the pair threshold) say which groups may be joined at all, so
  nothing is ever joined without direct evidence;
- inside each connected component of links, groups are merged greedily, the most similar
  first, by average linkage: two groups join while the mean similarity over all their
  pairs reaches the *cluster* threshold. A group whose members all link pairwise stays
  whole even where a few of its pairs fall just below the pair threshold, while two people
  joined by one stray link stay two: the other pairs between them pull the mean down;
- cannot-link pairs (two sequences on screen together in one video are two people, or a
  user's "not the same person") are never put in one group;
- must-link pairs (a user's "these are one person") start in one group, whatever their
  scores; the rest of each person joins them by the same average linkage. A must-link that
  would put a cannot-link pair in one group is left out (the caller decides which of two
  conflicting corrections wins: `reid_pipeline.identities.corrections`).

A threshold calibrated for pairs is not one for clusters: the cluster threshold is lower
(docs/calibration.md).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import numpy as np
from scipy.optimize import linear_sum_assignment
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components


@dataclass(frozen=True)
class Link:
    a: int
    b: int
    score: float


def identity_id(members: list[str]) -> str:
    """A stable id named after the identity's smallest member (e.g. 'clip-1a2b3c4d:3')."""
    return "person-" + hashlib.sha1(min(members).encode()).hexdigest()[:10]


@dataclass(frozen=True)
class Forward:
    """What became of an id that ended: the identities holding its sightings now (most
    first) and why (merged, split, unresolved, forgotten)."""

    old_id: str
    new_ids: tuple[str, ...]
    reason: str


def carry_ids(clusters: list[list[int]], derived: list[str], previous: dict[str, set[int]]) -> tuple[list[str], list[Forward]]:
    """Ids for new clusters (lists of sequence row ids) that keep the previous identities'
    ids: one-to-one by the sightings they share (`previous`: old id -> the sequence row ids
    that hold its sightings now, gone ones left out), the largest total overlap first
    (`linear_sum_assignment`); a tie goes to the old id the cluster would be named by anyway
    (`derived`, its `identity_id`), then to the old ids in sorted order. A cluster sharing
    no sighting with any old identity left takes its derived id (another one, salted, when
    that one is taken). Returns the ids and the forwards of the old ids that ended.
    Depends only on the arguments."""
    old_ids = sorted(previous)
    ids: list[str | None] = [None] * len(clusters)
    if old_ids and clusters:
        holder = {s: j for j, c in enumerate(clusters) for s in c}
        overlap = np.zeros((len(old_ids), len(clusters)))
        for i, old in enumerate(old_ids):
            for s in previous[old]:
                if s in holder:
                    overlap[i, holder[s]] += 1
        scale = min(overlap.shape) + 1  # the tie-break bonuses (at most one per pair) never outweigh a shared sighting
        bonus = np.array([[float(old == d) for d in derived] for old in old_ids])
        rows, cols = linear_sum_assignment(overlap * scale + bonus, maximize=True)
        for i, j in zip(rows.tolist(), cols.tolist()):
            if overlap[i, j] > 0:
                ids[j] = old_ids[i]
    kept = {i for i in ids if i is not None}
    ended = [old for old in old_ids if old not in kept]
    taken = kept | set(ended)
    for j, d in enumerate(derived):
        if ids[j] is None:
            name, salt = d, 0
            while name in taken:
                salt += 1
                name = "person-" + hashlib.sha1(f"{d}#{salt}".encode()).hexdigest()[:10]
            ids[j] = name
            taken.add(name)
    forwards = []
    holder_id = {s: ids[j] for j, c in enumerate(clusters) for s in c}
    for old in ended:
        counts: dict[str, int] = {}
        for s in previous[old]:
            if s in holder_id:
                counts[holder_id[s]] = counts.get(holder_id[s], 0) + 1
        successors = tuple(sorted(counts, key=lambda i: (-counts[i], i)))
        reason = ("forgotten" if not previous[old] else "unresolved" if not successors
                  else "merged" if len(successors) == 1 else "split")
        forwards.append(Forward(old, successors, reason))
    return [str(i) for i in ids], forwards


def cluster(
    sequence_ids: list[int],
    scored: list[Link],
    threshold: float,
    score_pair: Callable[[int, int], float] | None = None,
    cluster_threshold: float | None = None,
    cannot_link: Iterable[tuple[int, int]] = (),
    must_link: Iterable[tuple[int, int]] = (),
) -> dict[int, int]:
    """Map every sequence id to a cluster number (0..).

    `scored` holds every scored pair with its similarity; pairs at or above `threshold` are
    links. Within a connected component of links, groups that share at least one link are
    merged by average linkage while their mean similarity reaches `cluster_threshold`
    (default: `threshold`) and no `cannot_link` pair lies between them. Pairs of a
    component that were never scored are scored with `score_pair` when given, else taken as
    dissimilar (similarity 0). `must_link` pairs start in one group (before any merging,
    in sorted order, each skipped when it would join a cannot-link pair)."""
    ids = sorted(set(sequence_ids))
    index = {s: i for i, s in enumerate(ids)}
    pairs = sorted({(min(l.a, l.b), max(l.a, l.b)): l.score for l in scored if l.a in index and l.b in index and l.a != l.b}.items())
    links = [(a, b) for (a, b), s in pairs if s >= threshold]
    forbidden = {(min(index[a], index[b]), max(index[a], index[b])) for a, b in cannot_link if a in index and b in index}
    forced = _forced_groups(sorted({(min(index[a], index[b]), max(index[a], index[b]))
                                    for a, b in must_link if a in index and b in index and a != b}), forbidden)
    n = len(ids)
    if not links and not forced:
        return {s: i for i, s in enumerate(ids)}
    merge_at = threshold if cluster_threshold is None else cluster_threshold
    edges = [(index[a], index[b]) for a, b in links] + [(g[0], m) for g in forced for m in g[1:]]
    graph = coo_matrix((np.ones(len(edges)), ([a for a, _ in edges], [b for _, b in edges])), shape=(n, n))
    _, component = connected_components(graph, directed=False)
    score = {(index[a], index[b]): s for (a, b), s in pairs}
    linked = {(index[a], index[b]) for a, b in links}
    group_of = {m: g[0] for g in forced for m in g}
    label = np.full(n, -1)
    next_label = 0
    # components in order of their smallest member: labels depend only on the inputs
    for comp in sorted(set(component.tolist()), key=lambda c: int(np.flatnonzero(component == c)[0])):
        members = np.flatnonzero(component == comp)
        for group in _average_linkage(members, ids, score, linked, forbidden, score_pair, merge_at, group_of):
            label[group] = next_label
            next_label += 1
    return {s: int(label[index[s]]) for s in ids}


def _forced_groups(must: list[tuple[int, int]], forbidden: set[tuple[int, int]]) -> list[list[int]]:
    """Union-find over must-link pairs (positions, sorted); a pair whose groups hold a
    cannot-link pair is skipped. Groups of two or more, each sorted."""
    groups = {i: [i] for pair in must for i in pair}
    root = {i: i for i in groups}
    for a, b in must:
        ra, rb = root[a], root[b]
        if ra == rb or any((min(x, y), max(x, y)) in forbidden for x in groups[ra] for y in groups[rb]):
            continue
        ra, rb = min(ra, rb), max(ra, rb)
        groups[ra] += groups.pop(rb)
        for x in groups[ra]:
            root[x] = ra
    return [sorted(g) for g in groups.values() if len(g) > 1]


def _average_linkage(members, ids, score, linked, forbidden, score_pair, merge_at, group_of=None) -> list[np.ndarray]:
    """Greedy average linkage over one component, merging only groups joined by a link and
    free of cannot-link pairs; members forced together (`group_of`: position -> its forced
    group's first position) start as one group. Groups in order of their smallest member."""
    m = len(members)
    if m == 1:
        return [members]
    group_of = group_of or {}
    sim = np.zeros((m, m))
    link = np.zeros((m, m), bool)
    cannot = np.zeros((m, m), bool)
    for i, mi in enumerate(members):
        for j in range(i + 1, m):
            key = (mi, members[j])
            s = score.get(key)
            if s is None and score_pair is not None:
                s = score_pair(ids[mi], ids[members[j]])
            sim[i, j] = sim[j, i] = 0.0 if s is None else s
            link[i, j] = link[j, i] = key in linked
            cannot[i, j] = cannot[j, i] = key in forbidden
    # sums and counts between groups; a group is named by its smallest position
    total, size, alive = sim.copy(), np.ones(m), np.ones(m, bool)
    groups = {i: [i] for i in range(m)}

    def join(i: int, j: int) -> None:
        total[i] += total[j]
        total[:, i] += total[:, j]
        total[i, i] = 0.0
        link[i] |= link[j]
        link[:, i] |= link[:, j]
        cannot[i] |= cannot[j]
        cannot[:, i] |= cannot[:, j]
        size[i] += size[j]
        alive[j] = False
        link[j] = link[:, j] = False
        groups[i] += groups.pop(j)

    # forced groups first: each member joins its group's first member (positions ascend
    # with members, so the group is named by its smallest position)
    position = {int(p): i for i, p in enumerate(members)}
    for i, p in enumerate(members):
        first = group_of.get(int(p))
        if first is not None and position[first] != i:
            join(position[first], i)
    while True:
        mean = total / np.outer(size, size)
        ok = link & ~cannot & np.outer(alive, alive)
        np.fill_diagonal(ok, False)
        if not ok.any():
            break
        candidates = np.where(ok, mean, -np.inf)
        best = candidates.max()
        if best < merge_at:
            break
        i, j = (int(v) for v in np.argwhere(candidates == best)[0])  # first in row-major order: deterministic
        join(min(i, j), max(i, j))
    return [members[sorted(g)] for _, g in sorted(groups.items())]


def bcubed(predicted: dict, truth: dict) -> tuple[float, float]:
    """BCubed precision and recall of a clustering (item -> cluster) against the truth."""
    items = sorted(set(predicted) & set(truth))
    by_pred: dict = {}
    by_true: dict = {}
    for item in items:
        by_pred.setdefault(predicted[item], set()).add(item)
        by_true.setdefault(truth[item], set()).add(item)
    precision = np.mean([len(by_pred[predicted[i]] & by_true[truth[i]]) / len(by_pred[predicted[i]]) for i in items])
    recall = np.mean([len(by_pred[predicted[i]] & by_true[truth[i]]) / len(by_true[truth[i]]) for i in items])
    return float(precision), float(recall)
