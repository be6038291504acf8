"""Anonymous identities from the match graph, recomputed deterministically.

Incremental clustering (assign each newcomer to the nearest existing cluster) depends on
the order videos arrive in. Here the whole graph is clustered from scratch each time:
connected components of the linked pairs, then each component is checked with average
linkage over its pairwise similarities (a pair that was never linked counts as dissimilar),
so one stray link cannot chain two people together. Inputs are sorted first and the result
depends only on the set of sequences and links, never on their order.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Callable

import numpy as np
from scipy.cluster.hierarchy import fcluster, linkage
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components
from scipy.spatial.distance import squareform


@dataclass(frozen=True)
class Link:
    a: int
    b: int
    score: float


def identity_id(members: list[str]) -> str:
    """A stable id named after the identity's smallest member (e.g. 'clip-1a2b3c4d:3')."""
    return "person-" + hashlib.sha1(min(members).encode()).hexdigest()[:10]


def cluster(
    sequence_ids: list[int],
    scored: list[Link],
    threshold: float,
    score_pair: Callable[[int, int], float] | None = None,
) -> dict[int, int]:
    """Map every sequence id to a cluster number (0..).

    `scored` holds every scored pair with its similarity; pairs at or above `threshold` are
    links. Within a connected component of links, average linkage on distance
    1 - similarity is cut at 1 - threshold: a group stays together only while its members
    are, on average, as similar as a link. Pairs of a component that were never scored are
    scored with `score_pair` when given, else taken as dissimilar (similarity 0)."""
    ids = sorted(set(sequence_ids))
    index = {s: i for i, s in enumerate(ids)}
    pairs = sorted({(min(l.a, l.b), max(l.a, l.b)): l.score for l in scored if l.a in index and l.b in index and l.a != l.b}.items())
    links = [(a, b, s) for (a, b), s in pairs if s >= threshold]
    n = len(ids)
    if not links:
        return {s: i for i, s in enumerate(ids)}
    rows = [index[a] for a, _, _ in links]
    cols = [index[b] for _, b, _ in links]
    graph = coo_matrix((np.ones(len(links)), (rows, cols)), shape=(n, n))
    _, component = connected_components(graph, directed=False)
    score = {(index[a], index[b]): s for (a, b), s in pairs}
    label = np.full(n, -1)
    next_label = 0
    # components in order of their smallest member: labels depend only on the inputs
    for comp in sorted(set(component.tolist()), key=lambda c: int(np.flatnonzero(component == c)[0])):
        members = np.flatnonzero(component == comp)
        if len(members) <= 2:
            label[members] = next_label
            next_label += 1
            continue
        dist = np.ones((len(members), len(members)))
        np.fill_diagonal(dist, 0.0)
        for i, mi in enumerate(members):
            for j in range(i + 1, len(members)):
                s = score.get((mi, members[j]))
                if s is None and score_pair is not None:
                    s = score_pair(ids[mi], ids[members[j]])
                if s is not None:
                    dist[i, j] = dist[j, i] = 1.0 - s
        groups = fcluster(linkage(squareform(dist, checks=False), method="average"), t=1.0 - threshold + 1e-9, criterion="distance")
        for g in sorted(set(groups.tolist()), key=lambda g: int(np.flatnonzero(groups == g)[0])):
            label[members[groups == g]] = next_label
            next_label += 1
    return {s: int(label[index[s]]) for s in ids}


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
