"""Re-identification across videos, through the Dagster assets, on generated videos with
ground truth: who appears in two videos is linked, nobody else is, and identities do not
depend on the order the videos are processed in."""

import pytest

from reid_pipeline.identities.matching import DEFAULT_METHOD
from reid_pipeline.ingest.arrivals import partition_key_for
from reid_pipeline.ingest.sources import uri_for
from tests import synthetic
from tests.helpers import failure_message


def _scene(people, layout, shots=1):
    """People walking in one or two shots, at positions/scales that differ per video."""
    out = []
    for s in range(shots):
        actors = [
            synthetic.Actor(synthetic.face_by_person(p), start, end, scale=scale, brightness=bright)
            for p, (start, end, scale, bright) in zip(people[s], layout[s])
        ]
        out.append(synthetic.Shot(12, synthetic.background_for(s + len(people[0])), actors))
    return synthetic.Scene(out)


LEFT = ((0.22, 0.35), (0.3, 0.4), 1.0, (1.0, 1.0))
RIGHT = ((0.78, 0.6), (0.7, 0.55), 0.9, (0.9, 1.0))
CENTRE = ((0.45, 0.5), (0.55, 0.5), 1.2, (1.05, 0.95))


@pytest.fixture(scope="module")
def archive(videos_dir):
    """video A: astronaut + tom_hanks; video B: t1_0, then astronaut again after a cut;
    video C: t1_1 + t1_2 (nobody seen elsewhere)."""
    specs = {
        "a.avi": _scene([["astronaut", "tom_hanks"]], [[LEFT, RIGHT]]),
        "b.avi": _scene([["t1_0"], ["astronaut"]], [[CENTRE], [RIGHT]], shots=2),
        "c.avi": _scene([["t1_1", "t1_2"]], [[LEFT, RIGHT]]),
    }
    paths = {}
    for name, scene in specs.items():
        paths[name] = videos_dir / name
        synthetic.write_video(scene, paths[name])
    return paths


def _process(defs, instance, store, paths):
    job = defs.resolve_job_def("process_video")
    for path in paths:
        key = partition_key_for(path.name)
        store.register_video(key, uri_for(path))
        instance.add_dynamic_partitions("videos", [key])
        result = job.execute_in_process(
            partition_key=key, instance=instance, raise_on_error=False,
            run_config={"ops": {"frame_detections": {"config": {"sample_fps": 5}}}},
        )
        assert result.success, failure_message(result)
    ident = defs.resolve_job_def("rebuild_identities").execute_in_process(instance=instance)
    assert ident.success
    return {e.asset_key.to_user_string(): e.materialization.metadata for e in ident.get_asset_materialization_events()}


def _people_by_identity(store):
    """identity -> set of (video, person) from ground truth placement (one person per sequence)."""
    with store.connection() as conn:
        rows = conn.execute(
            "SELECT m.identity_id, s.partition_key, s.sequence_number FROM identity_sequences m"
            " JOIN sequences s ON s.id = m.sequence_id ORDER BY 1, 2, 3"
        ).fetchall()
    groups = {}
    for r in rows:
        groups.setdefault(r["identity_id"], set()).add((r["partition_key"], r["sequence_number"]))
    return sorted(sorted(g) for g in groups.values())


def test_people_in_two_videos_are_linked_and_nobody_else(defs, instance, store, archive):
    md = _process(defs, instance, store, [archive["a.avi"], archive["b.avi"], archive["c.avi"]])
    with store.connection() as conn:
        links = conn.execute(
            "SELECT partition_a, partition_b, score FROM matches WHERE linked ORDER BY score DESC"
        ).fetchall()
        sequences = conn.execute("SELECT count(*) AS n FROM sequences").fetchone()["n"]
    a, b = partition_key_for("a.avi"), partition_key_for("b.avi")
    assert sequences == 6  # A: 2, B: 2 (one per shot), C: 2
    assert [(l["partition_a"], l["partition_b"]) in ((a, b), (b, a)) for l in links] == [True]
    assert md["identities"]["identities"].value == 5
    assert md["identities"]["in_several_videos"].value == 1
    gallery = md["identities"]["gallery"].value
    assert gallery.endswith("index.html")

    # re-materialising a partition does not duplicate links
    before = store.scored_pairs("sface_2021dec", DEFAULT_METHOD)
    assert len(before) >= 1
    job = defs.resolve_job_def("process_video")
    assert job.execute_in_process(partition_key=b, instance=instance,
                                  run_config={"ops": {"frame_detections": {"config": {"sample_fps": 5}}}}).success
    after = store.scored_pairs("sface_2021dec", DEFAULT_METHOD)
    assert len(after) == len(before)
    with store.connection() as conn:
        assert conn.execute("SELECT count(*) AS n FROM matches WHERE linked").fetchone()["n"] == 1


def test_identities_do_not_depend_on_processing_order(defs, instance, store, archive):
    _process(defs, instance, store, [archive["a.avi"], archive["b.avi"], archive["c.avi"]])
    forward = _people_by_identity(store)
    with store.connection() as conn:
        conn.execute("TRUNCATE videos, faces, face_models CASCADE")
    _process(defs, instance, store, [archive["c.avi"], archive["b.avi"], archive["a.avi"]])
    assert _people_by_identity(store) == forward


def test_search_by_photo_by_time_and_gallery_in_a_browser(defs, instance, store, archive, tmp_path):
    import shutil
    import subprocess

    import cv2
    import numpy as np

    from reid_pipeline.faces import load_backend
    from reid_pipeline.identities.archive import photo_query, search
    from reid_pipeline.identities.matching import match_settings_for

    md = _process(defs, instance, store, [archive["a.avi"], archive["b.avi"], archive["c.avi"]])
    a, b = partition_key_for("a.avi"), partition_key_for("b.avi")
    backend = load_backend("yunet_sface")
    settings = match_settings_for(backend.model_name)
    # a photo: the astronaut pasted on a plain background, not a frame of any video
    photo = np.full((400, 400, 3), 200, np.uint8)
    face = synthetic.face_by_person("astronaut").image
    photo[60 : 60 + face.shape[0], 80 : 80 + face.shape[1]] = face
    results = search(store, backend.model_name, backend.dim, photo_query(backend, photo), settings)
    assert len(results) == 1
    assert {s["partition_key"] for s in results[0]["sightings"]} == {a, b}
    # by video time: who is on screen in B at 2.0 s (shot 2: the astronaut) appears in A too
    [seq] = store.sequences_at(b, time_s=2.0)
    vectors = store.sequence_faces([seq["id"]])[seq["id"]][0]
    results = search(store, seq["model"], seq["dim"], vectors, settings, exclude={seq["id"]})
    assert [s["partition_key"] for s in results[0]["sightings"]] == [a]
    # nobody from video C is found elsewhere
    for seq in store.sequences_at(partition_key_for("c.avi"), time_s=0.5):
        vectors = store.sequence_faces([seq["id"]])[seq["id"]][0]
        assert search(store, seq["model"], seq["dim"], vectors, settings, exclude={seq["id"]}) == []

    # the gallery, rendered by a real headless browser
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        pytest.skip("Debian's chromium is not installed (./reid test installs it where it can)")
    index = md["identities"]["gallery"].value
    shot = tmp_path / "gallery.png"
    subprocess.run(
        [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", f"--screenshot={shot}",
         "--window-size=1000,700", f"file://{index}"],
        check=True, capture_output=True, timeout=120,
    )
    image = cv2.imread(str(shot))
    assert image is not None and image.shape[:2] == (700, 1000)
    # five identity cards with face thumbnails: the page is not blank, and faces (skin tones)
    # were drawn where the cards are
    assert image.std() > 20
    faces = backend.detect(image)
    assert len(faces) >= 4


def test_a_two_face_sequence_of_a_known_person_joins_that_person(defs, instance, store, archive, videos_dir):
    """Video D shows t1_2 for a while, then Tom Hanks for 0.4 s (2 sampled faces). His
    short sequence is matched too and joins his identity from video A; nothing is left
    unresolved."""
    scene = synthetic.Scene([
        synthetic.Shot(12, synthetic.background_for(3), [synthetic.Actor(synthetic.face_by_person("t1_2"), *CENTRE[:3])]),
        synthetic.Shot(4, synthetic.background_for(4), [synthetic.Actor(synthetic.face_by_person("tom_hanks"), *LEFT[:3])]),
    ])
    path = videos_dir / "d.avi"
    synthetic.write_video(scene, path)
    md = _process(defs, instance, store, [archive["a.avi"], path])
    a, d = partition_key_for("a.avi"), partition_key_for("d.avi")
    with store.connection() as conn:
        [short] = conn.execute("SELECT id FROM sequences WHERE partition_key = %s AND face_count = 2", (d,)).fetchall()
        partitions = conn.execute(
            "SELECT s.partition_key FROM identity_sequences m JOIN identity_sequences me USING (model, identity_id)"
            " JOIN sequences s ON s.id = m.sequence_id WHERE me.sequence_id = %s", (short["id"],)).fetchall()
    assert sorted(r["partition_key"] for r in partitions) == sorted([a, d])
    assert md["identities"]["unresolved_sequences"].value == 0
    assert md["identities"]["identities"].value == 3  # astronaut, Tom Hanks, t1_2
