"""`reid gallery` in a real headless browser: open an identity, merge two identities of one
generated person, move a wrongly attached sighting out, and see the recomputed identities
(each action a Dagster run of `rebuild_identities`); then range requests, refused foreign
posts and a confirmed forget. Screenshots go to the test's tmp dir (printed)."""

import shutil
import urllib.error
import urllib.parse
import urllib.request

import dagster as dg
import numpy as np
import pytest

from reid_pipeline.cli.execution import DagsterRecompute
from reid_pipeline.config import Settings
from reid_pipeline.faces import load_backend
from reid_pipeline.identities.matching import DEFAULT_METHOD
from reid_pipeline.ingest.arrivals import partition_key_for
from reid_pipeline.presentation.gallery_app import GalleryContext, suggestion_bands
from tests import synthetic
from tests.helpers import people, process, sequence, serve_gallery

A = "fix_a.webm"  # VP8 (browsers play it: the player draws the face box over it); fix_b.avi: MJPG, not playable
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--no-first-run"]


def _matcher_errs(store):
    """Make the matcher wrong in the two ways people fix most: it misses that the astronaut
    of both videos is one person, and it links Tom Hanks (fix_a) to t1_0 (fix_b)."""
    astro_a, astro_b = sequence(store, A, 0), sequence(store, "fix_b.avi", 1)
    tom, t1 = sequence(store, A, 1), sequence(store, "fix_b.avi", 0)
    with store.connection() as conn:
        conn.execute("UPDATE matches SET score = 0.2, linked = false WHERE sequence_a = %s AND sequence_b = %s",
                     (min(astro_a, astro_b), max(astro_a, astro_b)))
        a, b = sorted((tom, t1))
        conn.execute(
            "INSERT INTO matches (model, method, sequence_a, sequence_b, partition_a, partition_b, score, template_similarity,"
            " linked) SELECT 'sface_2021dec', %s, %s, %s, sa.partition_key, sb.partition_key, 0.99, 0.99, true"
            " FROM sequences sa, sequences sb WHERE sa.id = %s AND sb.id = %s ON CONFLICT (model, method, sequence_a, sequence_b)"
            " DO UPDATE SET score = 0.99, linked = true", (DEFAULT_METHOD, a, b, a, b))


@pytest.fixture(scope="session")
def gallery_videos(videos_dir, two_videos):
    """fix_a as WebM (the scene of `two_videos`' fix_a), fix_b the AVI of `two_videos`."""
    from tests.conftest import LEFT, RIGHT, _fix_scene

    webm = videos_dir / A
    synthetic.write_video(_fix_scene([[("astronaut", LEFT), ("tom_hanks", RIGHT)]]), webm)
    return {"a": webm, "b": two_videos["b"]}


@pytest.fixture
def processed(defs, instance, store, gallery_videos, reid_env):
    """The two generated videos processed, the matcher's errors in, the identities computed;
    then the two astronauts' pair scored just under the link threshold (as the matcher
    scores a hard pair it misses: offered as "possibly the same person")."""
    process(defs, instance, store, [gallery_videos["a"], gallery_videos["b"]], rebuild=False)
    _matcher_errs(store)
    assert defs.resolve_job_def("rebuild_identities").execute_in_process(instance=instance).success
    assert people(store) == [[("fix_a", 0)], [("fix_a", 1), ("fix_b", 0)], [("fix_b", 1)]]
    floor, threshold = suggestion_bands("sface_2021dec")
    with store.connection() as conn:
        conn.execute("UPDATE matches SET score = %s WHERE sequence_a = %s AND sequence_b = %s", ((floor + threshold) / 2,
                     *sorted((sequence(store, A, 0), sequence(store, "fix_b.avi", 1)))))


@pytest.fixture
def gallery(processed, defs, instance, store):
    """The app on a free port, recomputing through Dagster runs."""
    ctx = GalleryContext(store=store, data_root=Settings().data_root, recompute=DagsterRecompute(defs, instance),
                         backend=lambda: load_backend("yunet_sface"), video_cache=Settings().video_cache)
    with serve_gallery(ctx) as url:
        yield url, ctx


def _photo_of(person, path, *others):
    """A photo of `person` (and `others`, smaller, to the right): a group photo."""
    import cv2

    photo = np.full((400, 400 + 260 * len(others), 3), 200, np.uint8)
    face = synthetic.face_by_person(person).image
    photo[60: 60 + face.shape[0], 80: 80 + face.shape[1]] = face
    for k, other in enumerate(others):
        face = cv2.resize(synthetic.face_by_person(other).image, None, fx=0.8, fy=0.8)
        photo[80: 80 + face.shape[0], 420 + 260 * k: 420 + 260 * k + face.shape[1]] = face
    cv2.imwrite(str(path), photo)
    return path


CHILD = "REID_GALLERY_TEST_CHILD"


@pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed (./reid test installs it where it can)")
def test_the_browser_walk_in_its_own_process(tmp_path):
    """The walk below runs in a fresh pytest process, as `reid gallery` runs in its own.
    In the full suite's process, after the e2e tests, Dagster's compute-log capture of the
    app's in-process run once waited forever on its `tail` helper (a state of that long-lived
    process, not of the app; see the session note)."""
    import os
    import signal
    import subprocess
    import sys

    def default_signals():  # a suite started in the background ignores SIGTERM, and so would Dagster's tail helpers
        for number in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGQUIT):
            signal.signal(number, signal.SIG_DFL)

    log = tmp_path / "walk.log"
    with log.open("w") as out:  # a file, not a pipe: helpers the child leaves behind cannot hold it open
        done = subprocess.run([sys.executable, "-m", "pytest", f"{__file__}::test_review_merge_move_out_and_forget_in_a_browser",
                               "-q", "-s", "-p", "no:cacheprovider"], env={**os.environ, CHILD: "1"}, stdout=out,
                              stderr=subprocess.STDOUT, timeout=600, preexec_fn=default_signals)
    text = log.read_text()
    print(text[-3000:])
    assert done.returncode == 0 and " passed" in text, text[-6000:]


@pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed (./reid test installs it where it can)")
@pytest.mark.skipif(not __import__("os").environ.get(CHILD), reason="runs in its own process (the test above)")
def test_review_merge_move_out_and_forget_in_a_browser(gallery, store, instance, tmp_path):
    from playwright.sync_api import sync_playwright

    url, ctx = gallery
    shots = tmp_path / "screenshots"
    shots.mkdir()
    astronaut_a = store.identity_holding(sequence(store, A, 0))
    astronaut_b = store.identity_holding(sequence(store, "fix_b.avi", 1))
    tom = store.identity_holding(sequence(store, A, 1))
    t1 = sequence(store, "fix_b.avi", 0)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        page = browser.new_page(viewport={"width": 1100, "height": 760})
        page.goto(url)  # without the home's secret: no face, a page saying what to open
        assert "Open the URL" in page.inner_text("body") and page.locator("img").count() == 0
        page.goto(f"{url}/?token={ctx.secret}")  # the URL `reid gallery` prints: then a cookie
        assert "token" not in page.url
        cards = page.locator("a.card[data-identity]")
        assert cards.count() == 3
        assert cards.first.get_attribute("data-identity") == tom  # the largest first: 2 sightings
        page.screenshot(path=shots / "1-identities.png", full_page=True)

        # open the astronaut of video a; the astronaut of video b is the closest suggestion: merge
        page.locator(f"a.card[data-identity='{astronaut_a}']").click()
        page.wait_for_url(f"**/identity/{astronaut_a}")
        assert page.locator("#sightings tr[data-sequence]").count() == 1
        assert page.locator(f"[data-suggestion='{astronaut_b}']").get_attribute("data-band") == "possibly"
        page.locator(f"[data-suggestion='{astronaut_b}']").screenshot(path=shots / "2a-suggestion.png")
        page.screenshot(path=shots / "2-identity.png", full_page=True)
        page.locator(f"[data-suggestion='{astronaut_b}'] a.primary").click()
        page.wait_for_url("**/merge?other=**")  # asks first, both identities' faces
        assert page.locator("[data-side] img").count() >= 2
        page.screenshot(path=shots / "3a-merge-confirmation.png", full_page=True)
        page.locator("#confirm").click()
        try:
            page.wait_for_url("**/identity/**Identities+recomputed**", timeout=60_000)
        except Exception:
            import faulthandler
            import sys

            faulthandler.dump_traceback(file=sys.stderr, all_threads=True)  # where the recompute waits
            raise
        assert page.locator("#sightings tr[data-sequence]").count() == 2
        assert "seen in 2 videos" in page.inner_text("main") and page.locator("#undo").count() == 1
        page.screenshot(path=shots / "3-merged-with-undo.png", full_page=True)

        # Tom Hanks's identity holds t1_0 by mistake: move that sighting out (asks first)
        page.goto(f"{url}/identity/{tom}")
        page.locator(f"tr[data-sequence='{t1}'] a.button").click()
        page.wait_for_url("**/move-out")
        page.screenshot(path=shots / "4a-not-this-person-confirmation.png", full_page=True)
        page.locator("#confirm").click()
        page.wait_for_url("**/moved?**Identities+recomputed**", timeout=60_000)
        assert "Moved the sighting out" in page.inner_text("[role=status]") and page.locator("#undo").count() == 1
        holder = store.identity_holding(t1)
        assert holder != tom and page.locator("#moved").get_attribute("data-holder") == holder
        page.screenshot(path=shots / "4b-not-this-person-result.png", full_page=True)
        page.goto(f"{url}/identity/{tom}")
        assert page.locator("#sightings tr[data-sequence]").count() == 1
        # the sighting just moved out is not offered back as a merge
        assert page.locator(f"[data-suggestion='{store.identity_holding(t1)}']").count() == 0
        page.screenshot(path=shots / "4-moved-out.png", full_page=True)

        # the recomputed identities: the astronaut (2 sightings) first, Tom Hanks, t1_0
        page.goto(url)
        assert page.locator("a.card[data-identity]").count() == 3
        assert "2 sightings in 2 videos" in page.locator("a.card[data-identity]").first.inner_text()
        page.screenshot(path=shots / "5-recomputed.png", full_page=True)

        # the video's page (what Dagster's metadata links to): its sightings with their faces
        page.goto(f"{url}/videos/{partition_key_for('fix_b.avi')}")
        assert page.locator("#sightings tr[data-sequence]").count() == 2 and page.locator("#sightings img").count() >= 2
        for row in page.locator("#sightings tr[data-sequence]").all():  # each names the identity holding it now
            holder = store.identity_holding(int(row.get_attribute("data-sequence")))
            assert row.locator("a[href^='/identity/']").all_inner_texts() == ([holder] if holder else [])
        assert page.locator("#contact-sheet").count() == 1

        # a WebM plays with the stored face box drawn over it and the chip of the moment marked
        _player_draws_the_box(browser, url, ctx, store, sequence(store, A, 0), shots)

        # an AVI: the browser cannot play it, the sighting's faces are shown instead
        page.goto(f"{url}/play/{t1}")
        assert page.locator("#stills img").count() >= 3 and page.locator("video").count() == 0
        assert page.locator("#frame").evaluate("img => img.complete && img.naturalWidth") == 640  # the middle moment, boxed
        page.screenshot(path=shots / "6-player.png", full_page=True)

        # search by photo; the corrections with their status
        page.goto(f"{url}/search")
        page.set_input_files("input[name=photo]", _photo_of("astronaut", tmp_path / "astronaut.png"))
        page.locator("form button").click()
        page.wait_for_load_state()
        assert page.locator("a.card").count() == 1 and "2 matching sightings" in page.inner_text("main")
        page.screenshot(path=shots / "7-search.png", full_page=True)
        page.goto(f"{url}/corrections")
        assert page.locator("tr[data-correction]").count() == 2 and page.inner_text("main").count("applied:") == 2
        page.screenshot(path=shots / "8-corrections.png", full_page=True)

        # a name typed on the card itself: saved in place, the card shows it
        tom_now = store.identity_holding(sequence(store, A, 1))
        page.goto(url)
        page.get_by_label(f"name of {tom_now}").fill("Tom")
        with page.expect_navigation():
            page.get_by_label(f"name of {tom_now}").press("Enter")
        assert "Tom" in page.locator(f"[data-identity='{tom_now}']").inner_text()
        page.screenshot(path=shots / "8a-named-in-place.png", full_page=True)
        page.goto(f"{url}/identity/{tom_now}/forget")
        assert page.locator("#forget-what img").count() >= 2
        page.screenshot(path=shots / "9-forget.png", full_page=True)
        browser.close()
    print(f"screenshots: {shots}")
    assert people(store) == [[("fix_a", 0), ("fix_b", 1)], [("fix_a", 1)], [("fix_b", 0)]]
    runs = instance.get_runs(filters=dg.RunsFilter(job_name="rebuild_identities", tags={"reid/launched_by": "gallery"}))
    assert len(runs) == 2 and all(r.status == dg.DagsterRunStatus.SUCCESS for r in runs)

    # the video answers range requests (the player seeks); posts from elsewhere are refused;
    # forget asks for a confirmation
    key = partition_key_for(A)
    from reid_pipeline.presentation.gallery_app import cookie_name

    owner = f"{cookie_name(int(url.rsplit(':', 1)[1]))}={ctx.secret}"  # the cookie the printed URL gave
    request = urllib.request.Request(f"{url}/video/{key}", headers={"Range": "bytes=0-99", "Cookie": owner})
    with urllib.request.urlopen(request) as response:
        assert response.status == 206 and len(response.read()) == 100
        assert response.headers["Content-Range"].startswith("bytes 0-99/")
    tom = store.identity_holding(sequence(store, A, 1))  # Tom Hanks alone now

    def post(path, data, host=None):
        body = urllib.parse.urlencode(data).encode()
        req = urllib.request.Request(f"{url}{path}", data=body, headers={"Cookie": owner, **({"Host": host} if host else {})})
        try:
            with urllib.request.urlopen(req) as response:
                return response.status, response.read().decode()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read().decode()

    # another site's page posting here (no token), or a rebound DNS name: refused
    assert post(f"/identity/{tom}/hide", {})[0] == 403
    assert post(f"/identity/{tom}/hide", {"csrf": ctx.token}, host="evil.example")[0] == 400
    # forget asks first: a wrong confirmation forgets nothing
    status, html = post(f"/identity/{tom}/forget", {"csrf": ctx.token, "confirm": "yes"})
    assert status == 200 and "Nothing forgotten" in html and store.identity_holding(sequence(store, A, 1))
    status, html = post(f"/identity/{tom}/forget", {"csrf": ctx.token, "confirm": "forget"})
    assert status == 200 and "Forgotten:" in html
    assert not store.rows("SELECT 1 FROM sequences WHERE partition_key = %s AND sequence_number = 1", (key,))
    assert people(store) == [[("fix_a", 0), ("fix_b", 1)], [("fix_b", 0)]]  # the others and their corrections stay


# the face-box canvas read back: its size, where it and the video lie, the painted pixels, the marked chips
READ_CANVAS = """() => {
  const c = document.getElementById("face-box"), v = document.getElementById("player");
  const d = c.getContext("2d").getImageData(0, 0, c.width, c.height).data, painted = [];
  for (let i = 3; i < d.length; i += 4) if (d[i] > 128) painted.push([((i - 3) / 4) % c.width, Math.floor((i - 3) / 4 / c.width)]);
  const vr = v.getBoundingClientRect(), cr = c.getBoundingClientRect();
  return {dpr: devicePixelRatio, size: [c.width, c.height], video: [vr.x, vr.y, vr.width, vr.height],
          canvas: [cr.x, cr.y, cr.width, cr.height], painted, t: v.currentTime,
          now: Array.from(document.querySelectorAll("#stills figure.now")).map(f => f.dataset.t)};
}"""


def _player_draws_the_box(browser, url, ctx, store, seq, shots):
    """The player of sighting `seq` (a WebM) on a screen of device pixel ratio 2: the video
    plays; paused at a sampled face's time, the canvas holds that face's stored box, scaled
    to the video's picture (with letterboxing when the element's shape differs), and nothing
    else; that face's chip is the marked one."""
    faces = store.rows("SELECT f.timestamp_s, f.box FROM faces f JOIN sequences s USING (partition_key, model, sequence_number)"
                       " WHERE s.id = %s AND f.reject_reason IS NULL ORDER BY f.timestamp_s", (seq,))
    face = faces[len(faces) // 2]
    page = browser.new_page(viewport={"width": 1100, "height": 900}, device_scale_factor=2)
    page.goto(f"{url}/play/{seq}?token={ctx.secret}")
    assert page.locator("video#player").count() == 1
    page.wait_for_function("document.getElementById('player').currentTime > 0.2", timeout=15_000)  # it plays
    page.evaluate("""t => new Promise(done => {
        const v = document.getElementById("player");
        v.pause();
        v.addEventListener("seeked", () => requestAnimationFrame(() => requestAnimationFrame(done)), {once: true});
        v.currentTime = t;
    })""", face["timestamp_s"])

    def check(width, height):
        got = page.evaluate(READ_CANVAS)
        assert got["dpr"] == 2 and abs(got["t"] - face["timestamp_s"]) < 1e-3
        assert got["canvas"] == got["video"], got  # the canvas lies exactly over the video
        assert got["size"] == [round(2 * got["video"][2]), round(2 * got["video"][3])]  # device pixels: a sharp line
        assert got["now"] == [f"{face['timestamp_s']:.3f}"]
        # the 640x480 picture as the video element shows it (object-fit: contain), in device pixels
        k = min(width / 640, height / 480)
        dx, dy = (width - 640 * k) / 2, (height - 480 * k) / 2
        x1, y1, x2, y2 = [2 * (dx + face["box"][0] * k), 2 * (dy + face["box"][1] * k),
                          2 * (dx + face["box"][2] * k), 2 * (dy + face["box"][3] * k)]
        pts = np.array(got["painted"], dtype=float)
        assert len(pts) > 2 * ((x2 - x1) + (y2 - y1)) * 3, len(pts)  # four sides of a 3 px (6 device px) line
        inside_x, inside_y = (pts[:, 0] > x1 - 6) & (pts[:, 0] < x2 + 6), (pts[:, 1] > y1 - 6) & (pts[:, 1] < y2 + 6)
        near_edge = ((np.abs(pts[:, 0] - x1) < 6) | (np.abs(pts[:, 0] - x2) < 6)) & inside_y \
            | ((np.abs(pts[:, 1] - y1) < 6) | (np.abs(pts[:, 1] - y2) < 6)) & inside_x
        assert near_edge.all(), (pts[~near_edge][:5], (x1, y1, x2, y2))  # nothing away from the box's edges
        for edge, axis in ((x1, 0), (x2, 0), (y1, 1), (y2, 1)):  # each side drawn
            assert (np.abs(pts[:, axis] - edge) < 6).sum() > 0.5 * (y2 - y1 if axis == 0 else x2 - x1), edge

    check(720, 540)
    page.screenshot(path=shots / "6a-player-box.png")
    page.evaluate("document.getElementById('player').style.height = '300px'")  # a wide element: the picture pillarboxed
    page.wait_for_timeout(300)
    check(720, 300)
    page.screenshot(path=shots / "6b-player-box-pillarboxed.png")
    page.close()


class RecomputeNow:
    """Recomputes at once, in the request (the core function, no Dagster run): for TestClient tests."""

    def __init__(self, store):
        self.store = store

    def start(self, reason: str) -> str:
        """Recompute every model's identities now."""
        from reid_pipeline.identities.archive import recompute_identities
        from reid_pipeline.identities.matching import match_settings_for

        for m in self.store.models():
            recompute_identities(self.store, m["model"], match_settings_for(m["model"]))
        return "now"

    def state(self, run_id: str) -> str:
        return "success"

    def forget_traces(self, plan) -> int:
        return 0


@pytest.fixture
def client(processed, store):
    """The app served, recomputing at once, and a `requests` session let in (the cookie of the
    printed URL; redirects followed): `get`/`post` take the app's paths."""
    import requests

    ctx = GalleryContext(store=store, data_root=Settings().data_root, recompute=RecomputeNow(store),
                         backend=lambda: load_backend("yunet_sface"), video_cache=Settings().video_cache)
    with serve_gallery(ctx) as url, requests.Session() as session:
        session.get(f"{url}/?token={ctx.secret}")

        class Client:
            def get(self, path, **kw):
                return session.get(url + path, **kw)

            def post(self, path, **kw):
                return session.post(url + path, **kw)

            def url(self, path):
                return url + path

        yield Client(), ctx


def gallery_video_b(store):
    """fix_b's file on this machine."""
    from reid_pipeline.ingest.sources import source_file

    [row] = store.rows("SELECT source_uri FROM videos WHERE partition_key = %s", (partition_key_for("fix_b.avi"),))
    return source_file(row["source_uri"])


def _path(response) -> str:
    return urllib.parse.urlsplit(response.url).path


def _count(store, kind=None) -> int:
    return store.rows("SELECT count(*) AS n FROM corrections WHERE %s::text IS NULL OR kind = %s", (kind, kind))[0]["n"]


def test_suggestions_confirmations_undo_and_where_a_moved_sighting_went(client, store):
    """What a person reads before and after a merge or a move-out: suggestions only above the
    model's floor, in words, with the two closest faces; a confirmation page (GET stores
    nothing); the result with an undo; a resubmitted form stores nothing more; a moved
    sighting's page says which identity holds it now."""
    import re

    c, ctx = client
    astronaut_a = store.identity_holding(sequence(store, A, 0))
    astronaut_b = store.identity_holding(sequence(store, "fix_b.avi", 1))
    tom = store.identity_holding(sequence(store, A, 1))
    html = c.get(f"/identity/{astronaut_a}").text
    suggested = re.findall(r'data-suggestion="([^"]+)" data-band="(\w+)"', html)
    assert suggested == [(astronaut_b, "possibly")]  # Tom Hanks + t1_0 score below the floor: not offered
    block = html[html.index(f'data-suggestion="{astronaut_b}"'):]
    assert "possibly the same person" in block and block[:block.index("</div></div>")].count("/chip/") == 2
    assert f'method="post" action="/identity/{astronaut_a}/merge"' not in html  # nothing merges at once, the drop-down included

    # the confirmation shows both identities' faces and stores nothing
    confirm = c.get(f"/identity/{astronaut_a}/merge", params={"other": astronaut_b})
    assert confirm.status_code == 200 and 'data-side="2"' in confirm.text and confirm.text.count("/chip/") >= 2
    assert _count(store) == 0
    done = c.post(f"/identity/{astronaut_a}/merge", data={"csrf": ctx.token, "other": astronaut_b})
    assert "Merged" in done.text and 'id="undo"' in done.text and people(store)[0] == [("fix_a", 0), ("fix_b", 1)]
    # what ties each sighting in, in the suggestions' words: merged by a correction, the pair only "possibly"
    assert done.text.count('<td class="tie" data-band="possibly">a correction; <span class="possibly">possibly the same person'
                           '</span> as ') == 2 and "not linked by the matcher, score 0.4" in done.text
    # browser back + resubmit: nothing more stored
    c.post(f"/identity/{astronaut_a}/merge", data={"csrf": ctx.token, "other": astronaut_b})
    assert _count(store) == 1
    [made] = store.rows("SELECT id FROM corrections")
    undone = c.post(f"/corrections/{made['id']}/undo", data={"csrf": ctx.token, "next": f"/identity/{astronaut_a}"})
    assert _path(undone) == f"/identity/{astronaut_a}" and _count(store) == 0
    assert [("fix_a", 0)] in people(store) and [("fix_b", 1)] in people(store)

    # not this person: asks first (the sighting's faces, the identity's other faces), then says where it went
    t1 = sequence(store, "fix_b.avi", 0)
    tom_page = c.get(f"/identity/{tom}").text
    assert f'href="/sequence/{t1}/move-out"' in tom_page
    assert tom_page.count('<td class="tie" data-band="likely"><span class="likely">likely the same person</span> as') == 2
    assert "linked by the matcher, score 0.990" in tom_page and "link, score" not in tom_page
    confirm = c.get(f"/sequence/{t1}/move-out")
    assert "this sighting" in confirm.text and "the other sightings of" in confirm.text and _count(store) == 0
    moved = c.post(f"/sequence/{t1}/move-out", data={"csrf": ctx.token, "from": tom})
    now = store.identity_holding(t1)
    assert now not in (None, tom) and _path(moved) == f"/sequence/{t1}/moved"
    assert f'data-holder="{now}"' in moved.text and f'href="/identity/{now}"' in moved.text and 'id="undo"' in moved.text
    assert f'The rest stays in <a href="/identity/{tom}">' in moved.text
    again = c.post(f"/sequence/{t1}/move-out", data={"csrf": ctx.token, "from": tom})
    assert _count(store) == 1 and store.identity_holding(t1) == now and f'data-holder="{now}"' in again.text

    # the corrections page in words, with faces
    listed = c.get("/corrections").text
    assert "You said this sighting is not this person" in listed and "cannot_link" not in listed
    assert listed[listed.index("data-correction"):].count("/chip/") >= 2


def test_name_forget_page_and_player_boxes(client, store, tmp_path):
    """A name is saved without a recomputation, back on the same page; the forget page shows
    the faces, videos and sightings that go in words; the player carries the face boxes."""
    c, ctx = client
    tom = store.identity_holding(sequence(store, A, 1))
    named = c.post(f"/identity/{tom}/label", data={"csrf": ctx.token, "label": "Tom"})
    assert _path(named) == f"/identity/{tom}" and "Recomputing" not in named.text
    assert 'alt="face of Tom"> Tom' in named.text and 'id="undo"' in named.text
    assert store.rows("SELECT label FROM identities WHERE identity_id = %s", (tom,)) == [{"label": "Tom"}]

    # the card shows the best face by quality, or the face chosen on the identity page
    astronaut = store.identity_holding(sequence(store, A, 0))
    faces = store.rows("SELECT f.detection_id, f.quality_weight FROM faces f JOIN sequences s USING (partition_key, model,"
                       " sequence_number) WHERE s.id = %s AND f.reject_reason IS NULL ORDER BY f.timestamp_s",
                       (sequence(store, A, 0),))
    best = max(faces, key=lambda f: f["quality_weight"])["detection_id"]
    key = partition_key_for(A)
    assert f'href="/identity/{astronaut}" data-identity="{astronaut}"><img src="/chip/{key}/{best}"' in c.get("/").text
    other = next(f["detection_id"] for f in faces if f["detection_id"] != best)
    covered = c.post(f"/identity/{astronaut}/cover", data={"csrf": ctx.token, "sequence": sequence(store, A, 0),
                                                            "detection": other})
    assert _path(covered) == f"/identity/{astronaut}" and 'id="undo"' in covered.text and "on the card" in covered.text
    assert f'data-identity="{astronaut}"><img src="/chip/{key}/{other}"' in c.get("/").text
    assert "You chose this face for the person" in c.get("/corrections").text
    # the static gallery (written by the identities asset) shows the same face on the card
    from reid_pipeline.identities.archive import recompute_identities
    from reid_pipeline.identities.matching import match_settings_for
    from reid_pipeline.presentation.gallery import write_gallery

    result = recompute_identities(store, "sface_2021dec", match_settings_for("sface_2021dec"))
    assert {i["identity_id"]: i["cover"] for i in result.identities}[astronaut] == (key, other)
    static = write_gallery(tmp_path / "static", result.identities, store.sightings("sface_2021dec"), lambda k, d: b"jpeg")
    assert f'<a class="card" href="{astronaut}.html"><img src="faces/{key}_{other}.jpg"' in static.read_text()
    # a name added on the card lands back on the list
    listed = c.post(f"/identity/{astronaut}/label", data={"csrf": ctx.token, "label": "May", "next": "/"})
    assert _path(listed) == "/" and ">May</div>" in listed.text

    forget = c.get(f"/identity/{tom}/forget").text
    assert "2 sightings in 2 videos" in forget and A in forget and "fix_b.avi" in forget
    assert forget.count("/chip/") >= 4 and "Dagster runs" in forget and "run history" in forget

    t1 = sequence(store, "fix_b.avi", 0)
    player = c.get(f"/play/{t1}").text
    boxes = __import__("json").loads(player.split('<script type="application/json" id="boxes">')[1].split("</script>")[0])
    faces = store.rows("SELECT timestamp_s, box FROM faces f JOIN sequences s USING (partition_key, model, sequence_number)"
                       " WHERE s.id = %s AND f.reject_reason IS NULL ORDER BY timestamp_s", (t1,))
    assert [f["t"] for f in boxes["faces"]] == [round(f["timestamp_s"], 3) for f in faces]
    assert boxes["faces"][0]["box"] == [round(float(v), 1) for v in faces[0]["box"]] and boxes["width"] > 0

    # an AVI (the browser cannot play it): the frame of the sighting's middle face, that face boxed
    import cv2

    from reid_pipeline.ingest.video import iter_frames

    assert f'<img id="frame" src="/frame/{t1}"' in player
    got = c.get(f"/frame/{t1}")
    assert got.status_code == 200 and got.headers["content-type"] == "image/jpeg" and "no-store" in got.headers["cache-control"]
    shown = cv2.imdecode(np.frombuffer(got.content, np.uint8), cv2.IMREAD_COLOR).astype(int)
    middle = faces[len(faces) // 2]
    x1, y1, x2, y2 = (round(float(v)) for v in middle["box"])
    assert shown.shape == (480, 640, 3) and shown[(y1 + y2) // 2, x1 - 1: x1 + 2].mean(axis=0)[0] > 200  # blue line (BGR)
    inner = (slice(y1 + 6, y2 - 6), slice(x1 + 6, x2 - 6))  # the face inside its box, of the frame at its time
    frames = list(iter_frames(gallery_video_b(store)))
    diffs = [np.abs(shown[inner] - f.image[inner].astype(int)).mean() for f in frames]
    assert abs(frames[int(np.argmin(diffs))].timestamp_s - middle["timestamp_s"]) < 1e-3, diffs
    assert c.get(f"/frame/{t1 + 1000}").status_code == 404
    assert __import__("requests").get(c.url(f"/frame/{t1}")).status_code == 403  # behind the home's secret, as chips


def test_search_by_photo_marks_the_face_and_searches_with_another(client, store, tmp_path):
    """A group photo: shown with its faces boxed (the largest searched with), each face
    offered; choosing another searches with it, from the copy kept in the page; the matches
    are listed per identity with their sightings (file, time span)."""
    import re

    c, ctx = client
    photo = _photo_of("astronaut", tmp_path / "group.png", "tom_hanks")
    with photo.open("rb") as f:
        first = c.post("/search", data={"csrf": ctx.token}, files={"photo": ("group.png", f, "image/png")}).text
    assert first.count('class="face-box') == 2 and 'class="face-box chosen" data-face="0"' in first
    astronaut = store.identity_holding(sequence(store, A, 0))
    assert f'href="/identity/{astronaut}"' in first and A in first and "0.0-0.8 s" in first
    kept = re.search(r'name="kept" value="([^"]+)"', first).group(1)
    second = c.post("/search", data={"csrf": ctx.token, "kept": kept, "face": "1"}).text
    tom = store.identity_holding(sequence(store, A, 1))
    assert 'class="face-box chosen" data-face="1"' in second and f'href="/identity/{tom}"' in second
    assert f'href="/identity/{astronaut}"' not in second
