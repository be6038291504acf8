"""Set-to-set measures and deterministic identity clustering (core, no database)."""

import itertools

import numpy as np
import pytest

from reid_pipeline.identities.clustering import Link, bcubed, cluster, identity_id
from reid_pipeline.identities.matching import METHODS, match_settings_for, similarity, spans_overlap


def _person(rng, centre, n, spread=0.05):
    v = centre + rng.normal(scale=spread, size=(n, centre.size))
    return v / np.linalg.norm(v, axis=1, keepdims=True)


@pytest.fixture
def people():
    rng = np.random.default_rng(3)
    centres = rng.normal(size=(3, 64))
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    return rng, centres


@pytest.mark.parametrize("method", METHODS)
def test_same_person_scores_higher_than_different_people(people, method):
    rng, c = people
    a1, a2, b = _person(rng, c[0], 8), _person(rng, c[0], 6), _person(rng, c[1], 7)
    same, different = similarity(method, a1, a2), similarity(method, a1, b)
    assert same > 0.8 > different
    assert similarity(method, a1, a2) == pytest.approx(similarity(method, a2, a1), abs=1e-6)


def test_robust_hausdorff_shrugs_off_a_few_bad_frames(people):
    rng, c = people
    a, b = _person(rng, c[0], 10), _person(rng, c[0], 10)
    b_bad = b.copy()
    b_bad[:2] = _person(rng, c[1], 2)  # two frames of someone else (a bad detection)
    assert similarity("robust_hausdorff", a, b_bad) > similarity("robust_hausdorff", a, b) - 0.05
    # while the plain template is pulled further by the outliers
    assert similarity("template", a, b) - similarity("template", a, b_bad) > 0.0


def test_settings_and_unknown_methods():
    s = match_settings_for("dlib_resnet_v1")
    assert s.method == "template" and 0 < s.threshold < 1
    assert match_settings_for("insightface_buffalo_l_w600k_r50", "template").threshold < s.threshold
    with pytest.raises(ValueError, match="unknown matching method"):
        match_settings_for("dlib_resnet_v1", "magic")
    with pytest.raises(ValueError, match="no calibrated threshold"):
        match_settings_for("some_new_model")
    assert spans_overlap(0, 10, 10, 20) and not spans_overlap(0, 10, 11, 20)


def test_identities_do_not_depend_on_input_order():
    links = [Link(1, 2, 0.97), Link(2, 3, 0.95), Link(1, 3, 0.96), Link(4, 5, 0.99), Link(3, 4, 0.2), Link(6, 7, 0.5)]
    seqs = list(range(1, 9))
    expected = None
    for order in itertools.islice(itertools.permutations(links), 0, 720, 37):
        result = cluster(list(reversed(seqs)), list(order), 0.9)
        groups = sorted(sorted(s for s in seqs if result[s] == g) for g in set(result.values()))
        expected = expected or groups
        assert groups == expected
    assert expected == [[1, 2, 3], [4, 5], [6], [7], [8]]


def test_one_stray_link_does_not_chain_two_people():
    # people {1,2,3} and {4,5,6}: pairs within a person high, pairs across at dlib's usual
    # impostor level, and one false link 3-4 above the pair threshold
    within = [Link(a, b, 0.96) for g in ((1, 2, 3), (4, 5, 6)) for a, b in itertools.combinations(g, 2)]
    across = [Link(a, b, 0.88) for a in (1, 2, 3) for b in (4, 5, 6) if (a, b) != (3, 4)]
    settings = match_settings_for("dlib_resnet_v1")
    result = cluster([1, 2, 3, 4, 5, 6], within + across + [Link(3, 4, 0.95)], settings.threshold,
                     cluster_threshold=settings.cluster_threshold)
    assert len({result[s] for s in (1, 2, 3)}) == 1 and len({result[s] for s in (4, 5, 6)}) == 1
    assert result[1] != result[4]


def test_a_person_whose_sequences_all_link_is_one_identity():
    """Eight sequences of one person (the case the accuracy benchmark found): most pairs link, a
    few fall just under the pair threshold, the mean is just under it too. Average linkage
    cut at the pair threshold split them; the cluster threshold keeps them whole."""
    settings = match_settings_for("dlib_resnet_v1")
    rng = np.random.default_rng(3)
    pairs = list(itertools.combinations(range(8), 2))
    scores = settings.threshold + rng.uniform(-0.6, 0.4, len(pairs)) * settings.cluster_gap
    links = [Link(a, b, float(s)) for (a, b), s in zip(pairs, scores)]
    assert np.mean(scores) < settings.threshold  # the old rule's knife edge
    old = cluster(list(range(8)), links, settings.threshold)
    assert len(set(old.values())) > 1
    new = cluster(list(range(8)), links, settings.threshold, cluster_threshold=settings.cluster_threshold)
    assert len(set(new.values())) == 1


def test_two_sequences_on_screen_together_are_never_one_identity():
    links = [Link(1, 2, 0.99), Link(2, 3, 0.97), Link(1, 3, 0.97)]
    result = cluster([1, 2, 3], links, 0.9, cannot_link=[(1, 2)])
    assert result[1] != result[2] and result[3] in (result[1], result[2])


def test_short_and_small_sequences_need_a_margin_to_link():
    s = match_settings_for("dlib_resnet_v1")
    solid = {"face_count": 12, "mean_face_px": 90.0}
    short = {"face_count": 2, "mean_face_px": 90.0}
    small = {"face_count": 9, "mean_face_px": 45.0}
    score = s.threshold + 0.001
    assert s.evidence_score(score, solid, solid) >= s.threshold
    assert s.short_margin > 0 and s.evidence_score(score, solid, short) < s.threshold
    assert s.small_margin > 0 and s.evidence_score(score, solid, small) < s.threshold
    assert s.evidence_score(score + s.short_margin, solid, short) >= s.threshold
    assert s.cluster_threshold < s.threshold


def test_bcubed_and_identity_ids():
    assert bcubed({1: "x", 2: "x", 3: "y"}, {1: "a", 2: "a", 3: "b"}) == (1.0, 1.0)
    p, r = bcubed({1: "x", 2: "x", 3: "x"}, {1: "a", 2: "a", 3: "b"})
    assert p < 1.0 and r == 1.0
    assert identity_id(["a:2", "b:1"]) == identity_id(["b:1", "a:2"])


def test_a_must_link_joins_two_people_the_scores_keep_apart_and_the_rest_follows():
    # person {1,2} and {3,4} by scores; the user says 2 and 3 are one person: all four join
    # (1 and 4 follow through their links), in any input order
    links = [Link(1, 2, 0.97), Link(3, 4, 0.97), Link(2, 3, 0.3), Link(1, 4, 0.3), Link(5, 6, 0.2)]
    for order in itertools.permutations([(2, 3), (6, 5)]):
        result = cluster([6, 5, 4, 3, 2, 1], links, 0.9, cluster_threshold=0.25, must_link=order)
        assert len({result[s] for s in (1, 2, 3, 4)}) == 1
        assert result[5] == result[6] and result[5] != result[1]
    # without the corrections: three groups
    plain = cluster([1, 2, 3, 4, 5, 6], links, 0.9, cluster_threshold=0.25)
    assert len(set(plain.values())) == 4


def test_a_cannot_link_beats_a_must_link_that_contradicts_it():
    result = cluster([1, 2, 3], [Link(1, 2, 0.99)], 0.9, must_link=[(1, 3), (2, 3)], cannot_link=[(1, 3)])
    # (1, 3) is forbidden; (2, 3) joins 2 and 3, and then 1 cannot join them by its link to 2
    assert result[2] == result[3] and result[1] != result[3]
