"""The static pages: names from files are shown as text, never run as markup."""

from reid_pipeline.presentation.gallery import write_gallery


def test_gallery_escapes_file_names_and_lists_unresolved_sequences(tmp_path):
    evil = "file:///videos/%3Cscript%3Ealert(1)%3C%2Fscript%3E%20%26%20'quote'.avi"
    sighting = {"identity_id": "person-1", "id": 1, "partition_key": "v-1", "sequence_number": 0, "start_s": 1.0,
                "end_s": 3.5, "face_count": 9, "best_detection_id": 4, "source_uri": evil}
    loose = {**{k: v for k, v in sighting.items() if k != "identity_id"}, "id": 2, "sequence_number": 3, "face_count": 1,
             "reason": "1 usable face, linked to nobody"}
    identity = {"identity_id": "person-1", "sequence_count": 1, "video_count": 1, "face_count": 9, "best_sequence": 1}
    index = write_gallery(tmp_path, [identity], [sighting], lambda key, det: b"\xff\xd8jpeg", title="<b>t</b>",
                          unresolved=[loose])
    page = index.read_text()
    person = (tmp_path / "person-1.html").read_text()
    for html in (page, person):
        assert "<script>" not in html and "<b>t</b>" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt; &amp; &#39;quote&#39;.avi" in person
    assert "Unresolved sequences (1)" in page and "linked to nobody" in page
    assert (tmp_path / "faces" / "v-1_4.jpg").read_bytes() == b"\xff\xd8jpeg"


def test_a_script_in_a_file_name_never_runs_in_the_browser(tmp_path):
    import shutil
    import subprocess

    import pytest

    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        pytest.skip("Debian's chromium is not installed (./reid test installs it where it can)")
    evil = "file:///v/%3Cscript%3Edocument.title%3D%27PWNED%27%3C%2Fscript%3E.avi"
    sighting = {"identity_id": "person-1", "id": 1, "partition_key": "v-1", "sequence_number": 0, "start_s": 0.0,
                "end_s": 1.0, "face_count": 3, "best_detection_id": 0, "source_uri": evil}
    identity = {"identity_id": "person-1", "sequence_count": 1, "video_count": 1, "face_count": 3, "best_sequence": 1}
    write_gallery(tmp_path, [identity], [sighting], lambda key, det: None)
    dom = subprocess.run(
        [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run", "--dump-dom",
         f"file://{tmp_path / 'person-1.html'}"],
        capture_output=True, text=True, timeout=120, check=True,
    ).stdout
    assert "<title>person-1</title>" in dom and "PWNED</title>" not in dom
    assert "&lt;script&gt;document.title='PWNED'&lt;/script&gt;.avi" in dom  # shown as text


def test_the_card_shows_the_cover_given_else_the_best_sequences_face(tmp_path):
    """The card's face: the identity's `cover` (the face chosen in `reid gallery`, or its best
    by quality: `corrections.card_covers`, as the live gallery shows it), else the best
    sequence's best face; the sightings on the identity's page keep their own faces."""
    sightings = [{"identity_id": "person-1", "id": n, "partition_key": "v-1", "sequence_number": n, "start_s": float(n),
                  "end_s": n + 1.0, "face_count": 3, "best_detection_id": 10 + n, "source_uri": "file:///v/a.avi"}
                 for n in (1, 2)]
    identity = {"identity_id": "person-1", "sequence_count": 2, "video_count": 1, "face_count": 6, "best_sequence": 2}
    write_gallery(tmp_path, [identity], sightings, lambda key, det: b"\xff\xd8" + bytes([det]))
    assert '<img src="faces/v-1_12.jpg" alt="face of person-1">' in (tmp_path / "index.html").read_text()
    write_gallery(tmp_path, [{**identity, "cover": ("v-2", 7)}], sightings, lambda key, det: b"\xff\xd8" + bytes([det]))
    assert '<img src="faces/v-2_7.jpg" alt="face of person-1">' in (tmp_path / "index.html").read_text()
    assert (tmp_path / "faces" / "v-2_7.jpg").read_bytes() == b"\xff\xd8\x07"
    person = (tmp_path / "person-1.html").read_text()
    assert "faces/v-1_11.jpg" in person and "faces/v-1_12.jpg" in person
