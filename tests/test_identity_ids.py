"""Identities keep their id across recomputation: another video (in either order), a
re-run, a correction or a forgotten video changes no id that still names mostly the same
person; an id that ends leaves a forward that corrections and the gallery follow."""

import asyncio

from reid_pipeline.cli import main
from reid_pipeline.config import Settings
from reid_pipeline.identities import corrections
from reid_pipeline.identities.clustering import Forward, carry_ids
from reid_pipeline.ingest.arrivals import partition_key_for
from reid_pipeline.presentation.gallery_app import GalleryContext, create_app
from tests.helpers import people, process, sequence


def _id(store, video, number):
    return store.identity_holding(sequence(store, video, number))


def _rebuild(defs, instance):
    assert defs.resolve_job_def("rebuild_identities").execute_in_process(instance=instance).success


def _get(store, path):
    """(status, location, body) of a GET to the gallery app, straight through ASGI (past its
    secret, when it has one, as a browser is let in: the token, then the cookie it sets)."""
    ctx = GalleryContext(store=store, data_root=Settings().data_root, recompute=None, backend=lambda: None)
    app = create_app(ctx)

    async def call(query: str, headers: list) -> dict:
        out = {"status": None, "headers": {}, "body": b""}

        async def receive():
            return {"type": "http.request", "body": b"", "more_body": False}

        async def send(message):
            if message["type"] == "http.response.start":
                out["status"] = message["status"]
                out["headers"] = {k.decode().lower(): v.decode() for k, v in message["headers"]}
            elif message["type"] == "http.response.body":
                out["body"] += message.get("body", b"")

        await app({"type": "http", "method": "GET", "path": path, "raw_path": path.encode(), "query_string": query.encode(),
                   "headers": [(b"host", b"127.0.0.1")] + headers, "scheme": "http", "server": ("127.0.0.1", 8765),
                   "client": ("127.0.0.1", 50000), "root_path": "", "http_version": "1.1"}, receive, send)
        return out

    secret = getattr(ctx, "secret", None)
    out = asyncio.run(call(f"token={secret}" if secret else "", []))
    if out["status"] == 303 and "set-cookie" in out["headers"]:
        out = asyncio.run(call("", [(b"cookie", out["headers"]["set-cookie"].split(";")[0].encode())]))
    return out["status"], out["headers"].get("location"), out["body"].decode()


def test_ids_stay_when_another_video_comes_in_either_order_and_when_one_is_rerun(defs, instance, store, two_videos):
    # video b first: t1_0 and the astronaut; then video a (the astronaut again, and Tom Hanks)
    process(defs, instance, store, [two_videos["b"]])
    t1, astronaut = _id(store, "fix_b.avi", 0), _id(store, "fix_b.avi", 1)
    process(defs, instance, store, [two_videos["a"]])
    assert people(store) == [[("fix_a", 0), ("fix_b", 1)], [("fix_a", 1)], [("fix_b", 0)]]
    assert (_id(store, "fix_b.avi", 0), _id(store, "fix_b.avi", 1)) == (t1, astronaut)
    assert _id(store, "fix_a.avi", 0) == astronaut  # the astronaut of video a joined the one of b, under b's id
    tom = _id(store, "fix_a.avi", 1)
    assert not store.rows("SELECT 1 FROM identity_forwards")  # no id ended

    # re-running a video makes new sequence rows: the ids are found again by their sightings
    before = {sequence(store, "fix_a.avi", 0), sequence(store, "fix_a.avi", 1)}
    process(defs, instance, store, [two_videos["a"]])
    assert not before & {sequence(store, "fix_a.avi", 0), sequence(store, "fix_a.avi", 1)}
    assert [_id(store, v, n) for v, n in (("fix_a.avi", 0), ("fix_a.avi", 1), ("fix_b.avi", 0))] == [astronaut, tom, t1]
    _rebuild(defs, instance)  # a plain re-run of the recomputation changes nothing either
    assert [_id(store, v, n) for v, n in (("fix_a.avi", 0), ("fix_a.avi", 1), ("fix_b.avi", 0))] == [astronaut, tom, t1]

    # the other order, from an empty archive: video a's people keep their ids when b comes
    with store.connection() as conn:
        conn.execute("TRUNCATE videos, faces, face_models CASCADE")
    process(defs, instance, store, [two_videos["a"]])
    astronaut, tom = _id(store, "fix_a.avi", 0), _id(store, "fix_a.avi", 1)
    process(defs, instance, store, [two_videos["b"]])
    assert (_id(store, "fix_a.avi", 0), _id(store, "fix_a.avi", 1), _id(store, "fix_b.avi", 1)) == (astronaut, tom, astronaut)


def test_a_merge_forwards_the_ended_id_which_corrections_and_the_gallery_follow(defs, instance, store, two_videos):
    process(defs, instance, store, [two_videos["a"], two_videos["b"]])
    astronaut, tom, t1 = _id(store, "fix_a.avi", 0), _id(store, "fix_a.avi", 1), _id(store, "fix_b.avi", 0)
    merge = corrections.merge(store, [tom, t1])
    _rebuild(defs, instance)
    assert people(store) == [[("fix_a", 0), ("fix_b", 1)], [("fix_a", 1), ("fix_b", 0)]]
    assert _id(store, "fix_a.avi", 0) == astronaut  # untouched by the merge
    kept = _id(store, "fix_a.avi", 1)
    assert kept in (tom, t1) and _id(store, "fix_b.avi", 0) == kept
    ended = t1 if kept == tom else tom
    forward = store.forward(ended)
    assert (forward["reason"], forward["new_ids"], forward["live"]) == ("merged", [kept], [kept])
    assert store.forward(kept) is None and store.forward(astronaut) is None

    # a correction naming the ended id follows its forward
    assert corrections.identity_sequences(store, ended) == corrections.identity_sequences(store, kept)
    corrections.label(store, ended, "Two people, merged")
    _rebuild(defs, instance)
    assert store.rows("SELECT identity_id FROM identities WHERE label IS NOT NULL") == [{"identity_id": kept}]

    # the gallery's page of the ended id says what became of it and leads to its successor
    status, location, _ = _get(store, f"/identity/{ended}")
    assert status == 303 and location.startswith(f"/identity/{kept}?") and "merged" in location

    # the merge undone: the person that ended comes back under their old id, the forward goes
    store.delete_correction(merge)
    _rebuild(defs, instance)
    assert (_id(store, "fix_a.avi", 1), _id(store, "fix_b.avi", 0), _id(store, "fix_a.avi", 0)) == (tom, t1, astronaut)
    assert store.forward(ended) is None


def test_forgetting_a_video_keeps_the_others_ids_and_forwards_the_forgotten(defs, cli_instance, store, two_videos):
    process(defs, cli_instance, store, [two_videos["a"], two_videos["b"]])
    astronaut, tom, t1 = _id(store, "fix_a.avi", 0), _id(store, "fix_a.avi", 1), _id(store, "fix_b.avi", 0)
    assert main(["forget", "--video", partition_key_for("fix_a.avi"), "--yes"]) == 0  # rebuilds the identities
    assert people(store) == [[("fix_b", 0)], [("fix_b", 1)]]
    assert (_id(store, "fix_b.avi", 0), _id(store, "fix_b.avi", 1)) == (t1, astronaut)  # the astronaut lost a sighting, kept the id
    forward = store.forward(tom)
    assert (forward["reason"], forward["live"]) == ("forgotten", [])
    status, _, body = _get(store, f"/identity/{tom}")
    assert status == 404 and f"{tom} is gone" in body and "forgotten" in body


def test_carry_ids_one_to_one_by_overlap_with_deterministic_ties():
    # B shares more with the cluster than A: B's id stays, A forwards to it
    assert carry_ids([[1, 2, 3]], ["person-x"], {"A": {1}, "B": {2, 3}}) == (["B"], [Forward("A", ("B",), "merged")])
    # a tie goes to the id the cluster would be named by anyway, then to the sorted ids
    assert carry_ids([[1, 2]], ["B"], {"A": {1}, "B": {2}})[0] == ["B"]
    assert carry_ids([[1, 2]], ["person-x"], {"A": {1}, "B": {2}})[0] == ["A"]
    # A's sightings went to two identities that kept other ids: split; others ended with nobody
    ids, forwards = carry_ids([[1, 3, 4, 5], [2, 6, 7], [8]], ["n1", "n2", "n3"],
                              {"A": {1, 2}, "B": {3, 4, 5}, "C": {6, 7}, "D": set(), "E": {9}})
    assert ids == ["B", "C", "n3"]
    assert forwards == [Forward("A", ("B", "C"), "split"), Forward("D", (), "forgotten"), Forward("E", (), "unresolved")]
    # a new cluster never takes an id that is live or ended in this round
    ids, _ = carry_ids([[1], [2], [3]], ["A", "A", "D"], {"A": {1}, "D": {9}})
    assert ids[0] == "A" and len(set(ids)) == 3 and "D" not in ids
    assert carry_ids([[1], [2], [3]], ["A", "A", "D"], {"A": {1}, "D": {9}})[0] == ids  # deterministic
