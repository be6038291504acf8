"""The gallery shows faces to its owner only: a secret per home, in the URL `reid gallery`
prints, then a cookie; a request without it gets a 403 page and no face picture."""

import os
import stat
import urllib.error
import urllib.request

import numpy as np
import polars as pl
import pytest

from reid_pipeline.faces.chips import encode_jpeg
from reid_pipeline.presentation.gallery_app import GalleryContext, cookie_name, home_secret
from reid_pipeline.storage import write_parquet
from tests.helpers import serve_gallery


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None


_OPENER = urllib.request.build_opener(_NoRedirect)


def _get(url: str, cookie: str | None = None):
    request = urllib.request.Request(url, headers={"Cookie": cookie} if cookie else {})
    try:
        with _OPENER.open(request) as response:
            return response.status, response.headers, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers, exc.read()


@pytest.fixture
def app_with_a_face(tmp_path):
    """The app over a data root holding one face chip (no database: the gate answers first)."""
    rng = np.random.default_rng(0)
    chip = encode_jpeg(rng.integers(0, 255, (112, 112, 3), dtype=np.uint8))
    write_parquet(pl.DataFrame({"detection_id": [7], "chip": [chip]}), tmp_path / "data" / "frame_detections" / "k1.parquet")
    ctx = GalleryContext(store=None, data_root=str(tmp_path / "data"), recompute=None, backend=lambda: None,
                         secret=home_secret(tmp_path / "home"))
    with serve_gallery(ctx) as url:
        yield url, int(url.rsplit(":", 1)[1]), ctx, chip


def test_a_request_without_the_secret_gets_no_face_and_with_it_does(app_with_a_face):
    url, port, ctx, chip = app_with_a_face
    # no secret, a wrong one, a wrong cookie: 403 and a page saying what to open, no face
    for path, cookie in (("/chip/k1/7", None), ("/chip/k1/7?token=guess", None), ("/", None), ("/videos/k1", None),
                         ("/report/k1/contact_sheet.png", None), ("/chip/k1/7", f"{cookie_name(port)}=guess"),
                         ("/chip/k1/7", f"{cookie_name(port + 1)}={ctx.secret}")):
        status, headers, body = _get(url + path, cookie)
        assert status == 403, path
        assert chip not in body and b"\xff\xd8" not in body and "reid gallery" in body.decode()
    # the printed URL: a cookie for the owner's browser (HttpOnly, SameSite=Strict), and the page without the token
    status, headers, _ = _get(f"{url}/chip/k1/7?token={ctx.secret}")
    assert status == 303 and headers["Location"] == "/chip/k1/7"
    set_cookie = headers["Set-Cookie"]
    assert set_cookie.startswith(f"{cookie_name(port)}={ctx.secret};") and "HttpOnly" in set_cookie
    assert "samesite=strict" in set_cookie.lower()
    status, headers, body = _get(f"{url}/chip/k1/7", set_cookie.split(";")[0])
    assert status == 200 and body == chip and headers["Content-Type"] == "image/jpeg"
    assert "no-store" in headers["Cache-Control"]


def test_the_secret_is_made_once_per_home_for_its_owner_only(tmp_path):
    home = tmp_path / "home"
    first = home_secret(home)
    path = home / "gallery_secret"
    assert len(first) >= 32 and stat.S_IMODE(path.stat().st_mode) == 0o600
    assert home_secret(home) == first  # the same on every start: bookmarks keep working
    assert home_secret(tmp_path / "other") != first  # per home
    os.chmod(path, 0o644)  # others could have read it: no secret any more, a new one
    second = home_secret(home)
    assert second != first and stat.S_IMODE(path.stat().st_mode) == 0o600
