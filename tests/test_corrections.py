"""People's corrections survive recomputation: re-running a video, processing the videos in
another order; a correction whose sightings are gone is reported stale, not dropped."""

import pytest

from reid_pipeline import corrections, synthetic
from reid_pipeline.cli import main
from reid_pipeline.inbox import partition_key_for
from reid_pipeline.sources import uri_for
from tests.helpers import failure_message

LEFT = ((0.22, 0.35), (0.3, 0.4), 1.0)
RIGHT = ((0.78, 0.6), (0.7, 0.55), 0.9)
CENTRE = ((0.45, 0.5), (0.55, 0.5), 1.2)


def _scene(shots):
    return synthetic.Scene([
        synthetic.Shot(10, synthetic.background_for(i + 5), [synthetic.Actor(synthetic.face_by_person(p), *place)
                                                             for p, place in people])
        for i, people in enumerate(shots)])


@pytest.fixture(scope="session")
def two_videos(videos_dir):
    """fix_a: the astronaut and Tom Hanks together; fix_b: t1_0, then the astronaut after a cut."""
    paths = {"a": videos_dir / "fix_a.avi", "b": videos_dir / "fix_b.avi"}
    synthetic.write_video(_scene([[("astronaut", LEFT), ("tom_hanks", RIGHT)]]), paths["a"])
    synthetic.write_video(_scene([[("t1_0", CENTRE)], [("astronaut", RIGHT)]]), paths["b"])
    return paths


def process(defs, instance, store, paths, rebuild=True):
    """Each video through `process_video` (5 sampled frames per second), then the identities."""
    job = defs.resolve_job_def("process_video")
    for path in paths:
        key = partition_key_for(path.name)
        store.register_video(key, uri_for(path))
        instance.add_dynamic_partitions("videos", [key])
        result = job.execute_in_process(partition_key=key, instance=instance, raise_on_error=False,
                                        run_config={"ops": {"frame_detections": {"config": {"sample_fps": 5}}}})
        assert result.success, failure_message(result)
    if rebuild:
        assert defs.resolve_job_def("rebuild_identities").execute_in_process(instance=instance).success


def people(store):
    """The identities as sorted lists of (video, sequence number): independent of row ids."""
    groups = {}
    for r in store.rows("SELECT m.identity_id, s.partition_key, s.sequence_id FROM identity_sequences m"
                        " JOIN sequences s ON s.id = m.sequence"):
        groups.setdefault(r["identity_id"], []).append((r["partition_key"][:5], r["sequence_id"]))
    return sorted(sorted(g) for g in groups.values())


def sequence(store, video, number):
    """The row id of a video's sequence by its number (fix_a: 0 astronaut, 1 Tom Hanks; fix_b: 0 t1_0, 1 astronaut)."""
    [row] = store.sequences_at(partition_key_for(video), sequence_id=number)
    return row["id"]


def test_a_merge_and_a_move_out_survive_rerunning_a_video_and_another_order(defs, instance, store, two_videos):
    process(defs, instance, store, [two_videos["a"], two_videos["b"]])
    # as computed: the astronaut in both videos, Tom Hanks, t1_0
    assert people(store) == [[("fix_a", 0), ("fix_b", 1)], [("fix_a", 1)], [("fix_b", 0)]]
    tom, t1 = (corrections.identity_holding(store, sequence(store, *at)) for at in (("fix_a.avi", 1), ("fix_b.avi", 0)))
    astronaut_b = sequence(store, "fix_b.avi", 1)
    # a person says: Tom Hanks and t1_0 are one person; the astronaut of video b is not the one of video a
    merge = corrections.merge(store, [tom, t1])
    split = corrections.move_out(store, astronaut_b)
    assert defs.resolve_job_def("rebuild_identities").execute_in_process(instance=instance).success
    corrected = [[("fix_a", 0)], [("fix_a", 1), ("fix_b", 0)], [("fix_b", 1)]]
    assert people(store) == corrected
    assert [s["status"] for s in corrections.status_of(store, merge) + corrections.status_of(store, split)] == ["applied"] * 2

    # re-running video b makes new sequence rows; the corrections find its sightings again
    before = {sequence(store, "fix_b.avi", 0), sequence(store, "fix_b.avi", 1)}
    process(defs, instance, store, [two_videos["b"]])
    assert not before & {sequence(store, "fix_b.avi", 0), sequence(store, "fix_b.avi", 1)}
    assert people(store) == corrected

    # the archive rebuilt from scratch in the other order: same people
    with store.connection() as conn:
        conn.execute("TRUNCATE videos, faces, face_models CASCADE")
    process(defs, instance, store, [two_videos["b"], two_videos["a"]])
    assert people(store) == corrected
    assert [s["status"] for s in corrections.status_of(store, merge) + corrections.status_of(store, split)] == ["applied"] * 2


def test_a_correction_whose_video_is_forgotten_is_listed_as_stale(defs, instance, store, two_videos, capsys):
    process(defs, instance, store, [two_videos["a"], two_videos["b"]])
    tom = corrections.identity_holding(store, sequence(store, "fix_a.avi", 1))
    t1 = corrections.identity_holding(store, sequence(store, "fix_b.avi", 0))
    assert main(["identity", "merge", tom, t1, "--no-rebuild"]) == 0
    assert main(["identity", "label", t1, "Someone from t1", "--no-rebuild"]) == 0
    assert main(["forget", "--video", partition_key_for("fix_b.avi"), "--yes"]) == 0  # rebuilds the identities
    capsys.readouterr()
    assert main(["identity", "corrections"]) == 0
    listed = capsys.readouterr().out
    assert "must_link   merge" in listed and "stale: fewer than two of its 2 sightings exist any more" in listed
    assert "stale: none of its 1 sighting exists any more" in listed
    [row] = store.rows("SELECT count(*) AS n FROM correction_status WHERE status = 'stale'")
    assert row["n"] == 2
