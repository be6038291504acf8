"""Forgetting a person and a video: nothing of them is left where the pipeline keeps data."""

import base64
import re
from pathlib import Path

import cv2
import dagster as dg
import numpy as np
import polars as pl

from reid_pipeline.cli import main
from reid_pipeline.faces import load_backend
from reid_pipeline.faces.chips import decode_jpeg
from reid_pipeline.identities.archive import photo_query, search
from reid_pipeline.identities.matching import match_settings_for
from reid_pipeline.ingest.arrivals import partition_key_for
from tests import synthetic


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

    # the person's chips, as they are before the forget: no byte of them may stay anywhere
    from reid_pipeline.config import Settings
    from reid_pipeline.faces.detection import read_chips
    from reid_pipeline.identities.forget import plan_identity

    data_root = Settings().data_path()
    before = plan_identity(store, data_root, backend.model_name, found["identity_id"])
    chips = [c for key, ids in before.rewrites.items() for c in read_chips(data_root / "frame_detections" / f"{key}.parquet", ids).values()]
    # a generated actor stands still: some of its chips are byte for byte those of faces that
    # stay (outside the person's sightings); those bytes cannot tell the person's copy
    staying = {c for key, ids in before.rewrites.items()
               for c in pl.read_parquet(data_root / "frame_detections" / f"{key}.parquet")
               .filter(~pl.col("detection_id").is_in(ids))["chip"].to_list()}
    chips = [c for c in chips if c not in staying]
    assert chips
    raw, b64 = _needles(chips)
    # the byte search finds them before the forget (the gallery's thumbnails); parquet files
    # compress their chips, so those are checked below by embedding the chips they keep
    holding = {p.parent.name for p in Path(reid_env / "home").rglob("*") if p.is_file() and _holds(p.read_bytes(), raw, b64)}
    assert "faces" in holding
    dagster_home = Path(reid_env / "home" / "dagster_home")
    runs_before = set(dg.DagsterInstance.get().get_run_ids())

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
        left = pl.read_parquet(path)["chip"].to_list()
        if left:
            vectors = backend.embed([decode_jpeg(c) for c in left])
            assert float((vectors @ query[0]).max()) < settings.threshold, f"a chip of the forgotten person in {path}"
    faces = store.rows("SELECT embedding FROM faces")
    assert faces and all(float(np.asarray(f["embedding"].to_numpy()) @ query[0]) < settings.threshold for f in faces)
    assert not list(data.glob("silhouette_report/*"))  # reports showed everyone's faces
    [log] = store.rows("SELECT kind, target, counts FROM forget_log")
    assert log["kind"] == "identity" and log["counts"]["faces"] > 0
    # no copy anywhere: no byte of the chips (raw or base64) in any table of any schema, any
    # file under REID_HOME (the Dagster home and its compute logs included), any answer of
    # the UI's GraphQL; no face at all in a picture of Dagster's metadata; Dagster's cached
    # latest materializations point at runs that exist; no compute logs of a deleted run
    assert not _in_database(store, raw, b64)
    assert (data / "gallery" / backend.model_name / "index.html").exists()  # rebuilt, with the others
    assert not [p for p in Path(reid_env / "home").rglob("*") if p.is_file() and _holds(p.read_bytes(), raw, b64)]
    instance = dg.DagsterInstance.get()
    gone = runs_before - set(instance.get_run_ids())
    assert gone  # the runs of the person's videos and of the identities went
    assert not [p for p in (dagster_home / "storage").glob("*") if p.name in gone]
    for record in instance.get_asset_records():
        last = record.asset_entry.last_materialization_record
        assert last is None or last.run_id not in gone, f"{record.asset_entry.asset_key}: cached event of a deleted run"
    answers = _graphql_answers(instance)
    assert not _holds(answers.encode(), raw, b64)
    assert not _faces_in_pictures(answers, backend), "a face in a picture of Dagster's metadata"

    # the others are still there
    assert len(search(store, backend.model_name, backend.dim, photo_query(backend, _photo_of("tom_hanks")), settings)) == 1

    # a whole video, by path: rows, files, its Dagster partition
    key = partition_key_for(str(a.resolve()))
    assert main(["forget", "--video", str(a), "--yes"]) == 0
    assert store.get_video(key) is None and not store.rows("SELECT 1 FROM faces WHERE partition_key = %s", (key,))
    assert not [p for p in data.rglob("*") if key in p.name]
    assert not dg.DagsterInstance.get().has_dynamic_partition("videos", key)
    assert a.exists()  # the source stays unless asked
    assert [r["kind"] for r in store.rows("SELECT kind FROM forget_log ORDER BY id")] == ["identity", "video"]


def _needles(chips: list[bytes]) -> tuple[list[bytes], list[str]]:
    """Each chip whole (a copy of it), and its base64 at the three alignments a chip can have
    inside a longer base64 text (less the edge characters that depend on its neighbours).
    Slices would not do: JPEGs of near-identical generated faces share long runs of bytes."""
    return list(chips), [base64.b64encode(c[k:]).decode()[4:-4] for c in chips for k in range(3)]


def _holds(blob: bytes, raw: list[bytes], b64: list[str]) -> bool:
    return any(n in blob for n in raw) or any(n.encode() in blob for n in b64)


def _in_database(store, raw, b64) -> list[str]:
    """Every text, json, jsonb and bytea column of every table of every schema that holds a needle."""
    columns = store.rows(
        "SELECT c.table_schema, c.table_name, c.column_name, c.data_type FROM information_schema.columns c"
        " JOIN information_schema.tables t USING (table_schema, table_name) WHERE t.table_type = 'BASE TABLE'"
        " AND c.table_schema NOT IN ('pg_catalog', 'information_schema')"
        " AND c.data_type IN ('text', 'character varying', 'json', 'jsonb', 'bytea')")
    assert any(c["table_schema"] == "dagster" for c in columns) and any(c["table_name"] == "event_logs" for c in columns)
    found = []
    for c in columns:
        column = f'"{c["table_schema"]}"."{c["table_name"]}"."{c["column_name"]}"'
        table = f'"{c["table_schema"]}"."{c["table_name"]}"'
        if c["data_type"] == "bytea":
            sql = (f"SELECT count(*) AS n FROM {table} WHERE EXISTS (SELECT 1 FROM unnest(%s::bytea[]) AS x(n)"
                   f" WHERE position(x.n IN {column}) > 0) OR EXISTS (SELECT 1 FROM unnest(%s::text[]) AS y(b)"
                   f" WHERE position(convert_to(y.b, 'UTF8') IN {column}) > 0)")
            args = (raw, b64)
        else:
            sql = f"SELECT count(*) AS n FROM {table} WHERE {column}::text LIKE ANY(%s)"
            args = ([f"%{n}%" for n in b64],)
        if store.rows(sql, args)[0]["n"]:
            found.append(column)
    return found


ASSET_QUERY = """{ assetNodes { assetKey { path }
  assetMaterializations(limit: 1000) { runId partition metadataEntries { label __typename
    ... on MarkdownMetadataEntry { mdStr } ... on TextMetadataEntry { text } ... on UrlMetadataEntry { url }
    ... on JsonMetadataEntry { jsonString } ... on PathMetadataEntry { path } } } } }"""
LATEST_QUERY = """query Latest($keys: [AssetKeyInput!]!) { assetsLatestInfo(assetKeys: $keys) { assetKey { path }
  latestMaterialization { runId metadataEntries { label __typename ... on MarkdownMetadataEntry { mdStr } } } } }"""


def _graphql_answers(instance) -> str:
    """What the UI's GraphQL answers about every asset's materializations (all kept, and the
    latest as the asset pages show it), over the project's real code location."""
    import json

    from dagster_graphql.test.utils import define_out_of_process_context, execute_dagster_graphql

    from reid_pipeline.config import PROJECT_ROOT

    with define_out_of_process_context(str(PROJECT_ROOT / "definitions.py"), "defs", instance) as context:
        nodes = execute_dagster_graphql(context, ASSET_QUERY)
        assert not nodes.errors, nodes.errors
        keys = [{"path": n["assetKey"]["path"]} for n in nodes.data["assetNodes"]]
        assert len(keys) >= 6 and any(n["assetMaterializations"] for n in nodes.data["assetNodes"])
        latest = execute_dagster_graphql(context, LATEST_QUERY, variables={"keys": keys})
        assert not latest.errors, latest.errors
    return json.dumps(nodes.data) + json.dumps(latest.data)


def _faces_in_pictures(text: str, backend) -> int:
    """Faces the detector finds in the pictures embedded in `text` (data: URIs)."""
    faces = 0
    for b64 in re.findall(r"data:image/[a-z]+;base64,([A-Za-z0-9+/=]+)", text):
        image = cv2.imdecode(np.frombuffer(base64.b64decode(b64), np.uint8), cv2.IMREAD_COLOR)
        faces += len(backend.detect(image)) if image is not None else 0
    return faces
