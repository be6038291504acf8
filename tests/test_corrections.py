"""People's corrections survive recomputation: re-running a video, processing the videos in
another order; a correction whose sightings are gone is reported stale, not dropped."""

from reid_pipeline.cli import main
from reid_pipeline.identities import corrections
from reid_pipeline.ingest.arrivals import partition_key_for
from tests.helpers import people, process, sequence


def test_a_merge_and_a_move_out_survive_rerunning_a_video_and_another_order(defs, instance, store, two_videos):
    process(defs, instance, store, [two_videos["a"], two_videos["b"]])
    # as computed: the astronaut in both videos, Tom Hanks, t1_0
    assert people(store) == [[("fix_a", 0), ("fix_b", 1)], [("fix_a", 1)], [("fix_b", 0)]]
    tom, t1 = (store.identity_holding(sequence(store, *at)) for at in (("fix_a.avi", 1), ("fix_b.avi", 0)))
    astronaut_b = sequence(store, "fix_b.avi", 1)
    # a person says: Tom Hanks and t1_0 are one person; the astronaut of video b is not the one of video a
    merge = corrections.merge(store, [tom, t1])
    split = corrections.move_out(store, astronaut_b)
    assert defs.resolve_job_def("rebuild_identities").execute_in_process(instance=instance).success
    corrected = [[("fix_a", 0)], [("fix_a", 1), ("fix_b", 0)], [("fix_b", 1)]]
    assert people(store) == corrected
    assert [s["status"] for s in store.correction_status(merge) + store.correction_status(split)] == ["applied"] * 2

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
    assert [s["status"] for s in store.correction_status(merge) + store.correction_status(split)] == ["applied"] * 2


def test_a_correction_whose_video_is_forgotten_is_listed_as_stale(defs, cli_instance, store, two_videos, capsys):
    process(defs, cli_instance, store, [two_videos["a"], two_videos["b"]])
    tom = store.identity_holding(sequence(store, "fix_a.avi", 1))
    t1 = store.identity_holding(sequence(store, "fix_b.avi", 0))
    assert main(["identity", "merge", tom, t1, "--no-rebuild"]) == 0
    assert main(["identity", "label", t1, "Someone from t1", "--no-rebuild"]) == 0
    assert main(["identity", "split", f"{partition_key_for('fix_b.avi')}:1", "--no-rebuild"]) == 0  # the astronaut of b
    assert main(["identity", "hide", tom]) == 0  # recomputes: hidden, the merge and the split applied
    assert store.rows("SELECT hidden, label FROM identities WHERE identity_id = %s", (tom,)) == [
        {"hidden": True, "label": "Someone from t1"}]  # the merged identity keeps the smaller member's id
    assert people(store) == [[("fix_a", 0)], [("fix_a", 1), ("fix_b", 0)], [("fix_b", 1)]]
    [hide] = store.rows("SELECT id FROM corrections WHERE kind = 'hide'")
    assert main(["identity", "undo", str(hide["id"])]) == 0 and not store.rows("SELECT 1 FROM identities WHERE hidden")
    assert main(["forget", "--video", partition_key_for("fix_b.avi"), "--yes"]) == 0  # rebuilds the identities
    capsys.readouterr()
    assert main(["identity", "corrections"]) == 0
    listed = capsys.readouterr().out
    assert "must_link   merge" in listed and "stale: fewer than two of its 2 sightings exist any more" in listed
    assert "stale: none of its 1 sighting exists any more" in listed  # the label
    assert "stale: one of its sides has no sighting left" in listed  # the split
    [row] = store.rows("SELECT count(*) AS n FROM correction_status WHERE status = 'stale'")
    assert row["n"] == 3


def test_a_correction_posted_twice_is_stored_once(store):
    """Browser back + resubmit, or a command run twice: the same kind, sides and value as the
    newest correction gives back that correction's id instead of a second row."""
    a = [{"partition_key": "k1", "start_s": 0.0, "end_s": 2.0, "t": 1.0, "box": [1.0, 2.0, 30.0, 40.0]}]
    b = [{"partition_key": "k2", "start_s": 1.0, "end_s": 3.0, "t": 2.0, "box": None}]
    merged = corrections.record(store, "must_link", a, b, note="merge", source="gallery")
    assert corrections.record(store, "must_link", a, b, note="merge again", source="gallery") == merged
    named = corrections.record(store, "label", a, value="May")
    assert corrections.record(store, "label", a, value="May") == named
    assert corrections.record(store, "label", a, value="Aunt May") != named  # another value: a new correction
    # the same as an older one (not the newest) is a new decision: "May" again after "Aunt May"
    again = corrections.record(store, "label", a, value="May")
    assert again not in (named, merged)
    assert corrections.record(store, "cannot_link", a, b) != corrections.record(store, "must_link", a, b)
    [row] = store.rows("SELECT count(*) AS n FROM corrections")
    assert row["n"] == 6
