"""Face sequences on generated videos with known ground truth, and the silhouette report."""

import numpy as np
import polars as pl
import pytest

from reid_pipeline.faces import load_backend
from reid_pipeline.faces.detection import detect_video, embed_detections
from reid_pipeline.presentation.evidence import evidence_at
from reid_pipeline.presentation.report import write_silhouette_report
from reid_pipeline.sequences.silhouette import band, silhouette
from reid_pipeline.sequences.tracking import (
    LinkSettings,
    QualityGate,
    build_sequences,
    link_settings_for,
    purity_and_fragmentation,
)
from tests import synthetic


@pytest.fixture(scope="module")
def backend():
    return load_backend("yunet_sface")


@pytest.fixture(scope="module")
def cut_and_return(backend, videos_dir):
    """P and Q; cut; R alone; cut; P again. Analysed at 5 of its 10 fps."""
    path = videos_dir / "cut_and_return.avi"
    gt = synthetic.write_video(synthetic.cut_and_return(seconds_per_shot=2.0), path)
    run = detect_video(path, backend, sample_fps=5)
    vectors = embed_detections(run.detections, backend)
    return gt, run, vectors


def _sequenced(gt, run, vectors, **link):
    result = build_sequences(run.detections, vectors, run.frames, QualityGate(), link_settings_for("sface_2021dec", **link))
    persons = gt.label(run.detections)
    faces = result.faces.with_columns(
        person=pl.Series(persons), frame_index=run.detections["frame_index"]
    )
    return result, faces


def test_sequences_are_pure_and_cuts_end_them(cut_and_return):
    gt, run, vectors = cut_and_return
    result, faces = _sequenced(gt, run, vectors)
    assert None not in faces["person"].to_list()  # every detection is a real face
    assert faces["reject_reason"].null_count() == faces.height  # all pass the gate here
    scores = purity_and_fragmentation(faces["sequence_number"].to_list(), faces["person"].to_list(), faces["shot"].to_list())
    assert scores["purity"] == 1.0 and scores["impure_sequences"] == 0
    assert scores["fragmentation"] == 1.0  # one sequence per person per shot
    # three shots found; no sequence crosses a cut
    assert result.frames["shot"].n_unique() == 3
    assert (faces.group_by("sequence_number").agg(pl.col("shot").n_unique())["shot"] == 1).all()
    # P in shot A and P again in shot C are different sequences
    p = "astronaut"
    p_sequences = faces.filter(pl.col("person") == p).group_by("shot").agg(pl.col("sequence_number").unique())
    assert p_sequences.height == 2 and len(set(sum(p_sequences["sequence_number"].to_list(), []))) == 2
    # no sequence holds two faces of one frame
    assert faces.group_by("sequence_number", "frame_index").len()["len"].max() == 1
    assert result.sequences.height == 4 and (result.sequences["face_count"] == 10).all()
    norms = np.linalg.norm(result.templates, axis=1)
    assert norms == pytest.approx(1.0, abs=1e-5)


def test_a_missed_face_does_not_split_its_sequence(cut_and_return):
    gt, run, vectors = cut_and_return
    # drop every face of two sampled frames in shot A: a gap of 2 is bridged
    frames = sorted(run.detections["frame_index"].unique().to_list())
    gap = frames[3:5]
    keep = ~run.detections["frame_index"].is_in(gap)
    thinned = run.detections.filter(keep)
    result = build_sequences(thinned, vectors[keep.to_numpy()], run.frames, QualityGate(), link_settings_for("sface_2021dec", max_gap=2))
    assert result.sequences.height == 4
    strict = build_sequences(thinned, vectors[keep.to_numpy()], run.frames, QualityGate(), link_settings_for("sface_2021dec", max_gap=1))
    assert strict.sequences.height == 6  # without bridging both people of shot A split


def test_quality_gate_rejects_with_reasons(cut_and_return):
    gt, run, vectors = cut_and_return
    gate = QualityGate(min_face_px=int(run.detections["face_px"].median()) + 1)
    result = build_sequences(run.detections, vectors, run.frames, gate, LinkSettings())
    rejected = result.faces.filter(pl.col("reject_reason").is_not_null())
    assert 0 < rejected.height < result.faces.height
    assert rejected["sequence_number"].null_count() == rejected.height
    assert all(r.startswith("small face") for r in rejected["reject_reason"])


def test_appearance_keeps_crossing_people_apart(backend, videos_dir):
    """Two people walk towards each other; even a generous geometry gate does not swap them."""
    path = videos_dir / "walk.avi"
    gt = synthetic.write_video(synthetic.two_people_walking(seconds=3.0), path)
    run = detect_video(path, backend, sample_fps=5)
    vectors = embed_detections(run.detections, backend)
    result, faces = _sequenced(gt, run, vectors, max_centre_shift=10.0)
    scores = purity_and_fragmentation(faces["sequence_number"].to_list(), faces["person"].to_list(), faces["shot"].to_list())
    assert scores["purity"] == 1.0 and scores["fragmentation"] == 1.0


def test_silhouette_is_high_on_clean_sequences_and_low_when_people_are_mixed(cut_and_return):
    gt, run, vectors = cut_and_return
    result, faces = _sequenced(gt, run, vectors)
    ids = faces["sequence_number"].to_numpy()
    clean = silhouette(vectors, ids)
    # P appears in two sequences (A and C): the others separate strongly
    assert clean.mean > 0.25 and clean.scored_sequences == 4
    # mix people: split every person's faces in halves and pair halves of different people
    persons = faces["person"].to_list()
    order = {p: i for i, p in enumerate(sorted(set(persons)))}
    mixed = np.array([(order[p] + (k % 2)) % len(order) for k, p in enumerate(persons)])
    bad = silhouette(vectors, mixed)
    assert bad.mean < 0.25 and band(bad.mean).startswith("low: sequences look alike")


def test_silhouette_handles_singletons_and_single_sequences():
    rng = np.random.default_rng(0)
    vectors = rng.normal(size=(5, 8))
    one = silhouette(vectors, np.array([0, 0, 0, 1, -1]))
    assert one.mean is None and one.singleton_sequences == 1 and "not scored" in one.note and "undefined" not in one.band
    assert np.isnan(one.per_face).all()


def test_the_report_draws_plots_only_where_there_is_a_silhouette(cut_and_return, tmp_path):
    gt, run, vectors = cut_and_return
    result, _ = _sequenced(gt, run, vectors)
    written = {}
    for name, keep in (("whole", result.faces["sequence_number"].is_not_null()),
                       ("one sequence", result.faces["sequence_number"] == result.sequences["sequence_number"][0])):
        membership = result.faces.filter(keep)
        detections = run.detections.join(membership.select("detection_id"), on="detection_id")
        folder = tmp_path / name
        folder.mkdir()
        scores, pictures = write_silhouette_report(folder, name, detections, vectors[keep.to_numpy()], membership,
                                                   result.sequences.filter(pl.col("sequence_number").is_in(membership["sequence_number"].unique().implode())))
        written[name] = (scores, set(pictures), {p.name for p in folder.iterdir()})
    scores, pictures, files = written["whole"]
    assert scores.mean is not None and {"silhouette_plot", "projection", "contact_sheet"} <= pictures
    assert {"silhouette_plot.png", "projection.png", "report.html"} <= files
    scores, pictures, files = written["one sequence"]
    # nothing to compare: no plots (they cost a second), the sheet and the page say why
    assert scores.mean is None and "silhouette_plot" not in pictures and "projection" not in pictures
    assert "contact_sheet" in pictures and "projection.png" not in files
    assert "not scored" in (tmp_path / "one sequence" / "report.html").read_text()


def test_evidence_lists_the_sequences_on_screen(cut_and_return):
    gt, run, vectors = cut_and_return
    result, _ = _sequenced(gt, run, vectors)
    active, png = evidence_at(run.detections, result.faces, result.sequences, time_s=1.0)
    assert active.height == 2  # P and Q in shot A
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    active, _ = evidence_at(run.detections, result.faces, result.sequences, time_s=3.0)
    assert active.height == 1  # R alone


def test_a_fade_inside_a_shot_is_not_a_cut_and_a_real_cut_still_is(backend, videos_dir):
    """Shot 1: two people while the light drops from x1.25 to x0.7 and turns blue within
    half a second; shot 2 (a hard cut): a third person. The fade fires the colour test
    alone: no cut, one sequence per person; the cut still splits."""
    a, b, c = synthetic._pick(None, 3)
    scene = synthetic.Scene([
        synthetic.Shot(30, synthetic.background_for(0), [
            synthetic.Actor(a, (0.25, 0.5), (0.3, 0.5)), synthetic.Actor(b, (0.75, 0.5), (0.7, 0.5)),
        ], lighting=(1.25, 0.7), tint=(1.2, 1.0, 0.8), fade=(12, 17)),
        synthetic.Shot(20, synthetic.background_for(1), [synthetic.Actor(c, (0.5, 0.5), (0.55, 0.5))]),
    ])
    path = videos_dir / "fade.avi"
    gt = synthetic.write_video(scene, path)
    run = detect_video(path, backend, sample_fps=5)
    # the fade does change the colours: the old colour-only test would have cut here
    fade_frames = run.frames.filter(pl.col("frame_index").is_between(12, 18))
    assert fade_frames["cut_score"].max() >= link_settings_for("sface_2021dec").cut_threshold
    vectors = embed_detections(run.detections, backend)
    result, faces = _sequenced(gt, run, vectors)
    shots = dict(zip(result.frames["frame_index"].to_list(), result.frames["shot"].to_list()))
    assert {shots[f] for f in shots if f < 30} == {0} and {shots[f] for f in shots if f >= 30} == {1}
    scores = purity_and_fragmentation(faces["sequence_number"].to_list(), faces["person"].to_list(), faces["shot"].to_list())
    assert scores["purity"] == 1.0 and scores["fragmentation"] == 1.0
    assert result.sequences.height == 3


def test_a_cut_that_leaves_a_face_in_place_does_not_end_its_sequence(cut_and_return):
    """The same frames, with a cut forced in the middle of shot A: both people are where
    they were and look the same, so both sequences go on; a cut to other people still
    starts new ones."""
    gt, run, vectors = cut_and_return
    frames = run.frames.sort("frame_index")
    forced = frames["frame_index"][4]
    cut = frames.with_columns(
        cut_score=pl.when(pl.col("frame_index") == forced).then(1.0).otherwise(pl.col("cut_score")),
        structure_score=pl.when(pl.col("frame_index") == forced).then(1.0).otherwise(pl.col("structure_score")),
    )
    result = build_sequences(run.detections, vectors, cut, QualityGate(), link_settings_for("sface_2021dec"))
    assert result.frames["shot"].n_unique() == 4  # the forced cut is a shot change...
    assert result.sequences.height == 4  # ...but nobody's sequence ended there
    strict = build_sequences(run.detections, vectors, cut, QualityGate(), link_settings_for("sface_2021dec", cut_appearance_distance=0.0))
    assert strict.sequences.height == 6


def test_silhouette_scores_a_bounded_sample_of_long_sequences():
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(2, 16))
    vectors = np.concatenate([c + 0.05 * rng.normal(size=(500, 16)) for c in centres])
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    ids = np.repeat([0, 1], 500)
    capped = silhouette(vectors, ids, per_sequence_cap=20)
    assert capped.scored_faces == 40 and np.isfinite(capped.per_face).sum() == 40
    full = silhouette(vectors, ids, per_sequence_cap=1000)
    assert abs(capped.mean - full.mean) < 0.05 and capped.band == full.band == "strong"
