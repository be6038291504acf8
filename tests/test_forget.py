"""Forgetting a person and a video: nothing of them is left where the pipeline keeps data."""

from pathlib import Path

import numpy as np
import polars as pl

from reid_pipeline.archive import photo_query, search
from reid_pipeline.cli import main
from reid_pipeline.faces import load_backend
from reid_pipeline.faces.chips import decode_jpeg
from reid_pipeline.inbox import partition_key_for
from reid_pipeline.matching import match_settings_for
from reid_pipeline.testing import synthetic


def _scene(pairs):
    shots = [synthetic.Shot(12, synthetic.background_for(i), [
        synthetic.Actor(synthetic.face_by_person(p), start, end, scale=scale) for p, (start, end, scale) in people])
        for i, people in enumerate(pairs)]
    return synthetic.Scene(shots)


LEFT, RIGHT = ((0.22, 0.4), (0.3, 0.45), 1.0), ((0.78, 0.55), (0.7, 0.5), 0.9)


def _photo_of(person: str) -> np.ndarray:
    """A photo of `person` pasted on a plain background (not a frame of any video)."""
    photo = np.full((400, 400, 3), 200, np.uint8)
    face = synthetic.face_by_person(person).image
    photo[60: 60 + face.shape[0], 80: 80 + face.shape[1]] = face
    return photo


def test_forget_a_person_then_a_video(reid_env, store, capsys, videos_dir):
    a, b = videos_dir / "forget_a.avi", videos_dir / "forget_b.avi"
    synthetic.write_video(_scene([[("astronaut", LEFT), ("tom_hanks", RIGHT)]]), a)
    synthetic.write_video(_scene([[("t1_0", LEFT)], [("astronaut", RIGHT)]]), b)
    assert main(["process", str(a), str(b), "--sample-fps", "5"]) == 0
    backend = load_backend("yunet_sface")
    settings = match_settings_for(backend.model_name)
    photo = reid_env / "astronaut.png"
    import cv2

    cv2.imwrite(str(photo), _photo_of("astronaut"))
    query = photo_query(backend, _photo_of("astronaut"))
    [found] = search(store, backend.model_name, backend.dim, query, settings)
    assert len(found["sightings"]) == 2
    capsys.readouterr()

    # without a terminal and without --yes nothing happens
    assert main(["forget", "--photo", str(photo)]) == 2
    assert "nothing forgotten" in capsys.readouterr().err
    assert main(["forget", "--photo", str(photo), "--yes"]) == 0
    out = capsys.readouterr().out
    assert f"forget identity {backend.model_name}/{found['identity_id']}" in out and "Dagster runs deleted" in out

    # gone: no match for the photo, no row, no chip anywhere under the data root
    assert search(store, backend.model_name, backend.dim, query, settings) == []
    data = Path(reid_env / "home" / "data")
    for path in data.glob("frame_detections/*[!s].parquet"):
        chips = pl.read_parquet(path)["chip"].to_list()
        if chips:
            vectors = backend.embed([decode_jpeg(c) for c in chips])
            assert float((vectors @ query[0]).max()) < settings.threshold, f"a chip of the forgotten person in {path}"
    faces = store.rows("SELECT embedding FROM faces")
    assert faces and all(float(np.asarray(f["embedding"].to_numpy()) @ query[0]) < settings.threshold for f in faces)
    assert not list(data.glob("silhouette_report/*"))  # reports showed everyone's faces
    [log] = store.rows("SELECT kind, target, counts FROM forget_log")
    assert log["kind"] == "identity" and log["counts"]["faces"] > 0
    # the others are still there
    assert len(search(store, backend.model_name, backend.dim, photo_query(backend, _photo_of("tom_hanks")), settings)) == 1

    # a whole video, by path: rows, files, its Dagster partition
    import dagster as dg

    key = partition_key_for(str(a.resolve()))
    assert main(["forget", "--video", str(a), "--yes"]) == 0
    assert store.get_video(key) is None and not store.rows("SELECT 1 FROM faces WHERE partition_key = %s", (key,))
    assert not [p for p in data.rglob("*") if key in p.name]
    assert not dg.DagsterInstance.get().has_dynamic_partition("videos", key)
    assert a.exists()  # the source stays unless asked
    assert [r["kind"] for r in store.rows("SELECT kind FROM forget_log ORDER BY id")] == ["identity", "video"]
