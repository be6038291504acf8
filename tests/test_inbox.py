import os
import re

from reid_pipeline.ingest.arrivals import partition_key_for
from reid_pipeline.ingest.inbox import scan

SAFE = re.compile(r"^[a-z0-9_]+-[0-9a-f]{8}$")


def test_partition_keys_are_safe_stable_and_unique():
    odd = ["Zoë, Paris [2024].mp4", "my video (final).MOV", "日本語の動画.mp4", "a,b,c.avi", "..mp4", "x" * 300 + ".mkv"]
    keys = [partition_key_for(name) for name in odd]
    assert all(SAFE.match(k) and len(k) <= 49 for k in keys), keys
    assert keys[0] == partition_key_for("Zoë, Paris [2024].mp4")
    assert partition_key_for("s3://bucket/in/Zo%C3%AB.mp4").startswith("zoe-")  # URIs: the decoded name
    assert keys[0].startswith("zoe_paris_2024-")
    assert keys[2].startswith("video-")  # nothing ASCII left in the name
    assert len(set(keys)) == len(keys)
    # the same name in two folders is two videos
    assert partition_key_for("a/clip.mp4") != partition_key_for("b/clip.mp4")


def _touch(path, data=b"x" * 100, age_s=0.0, now=1_000_000.0):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    os.utime(path, (now - age_s, now - age_s))


def test_a_video_is_taken_once_it_holds_still(tmp_path):
    now = 1_000_000.0
    _touch(tmp_path / "sub" / "clip.mp4", age_s=60, now=now)
    first = scan(tmp_path, set(), now=now)
    assert first.ready == [] and "sub/clip.mp4" in first.pending  # seen once: not yet
    second = scan(tmp_path, set(), first.pending, first.ignored, now=now)
    clip = str(tmp_path.resolve() / "sub" / "clip.mp4")
    assert [(k, p.name) for k, p in second.ready] == [(partition_key_for(clip), "clip.mp4")]
    # once registered, never again
    third = scan(tmp_path, {partition_key_for(clip)}, second.pending, second.ignored, now=now)
    assert third.ready == [] and third.pending == {}


def test_a_file_still_being_written_is_not_taken(tmp_path):
    now = 1_000_000.0
    path = tmp_path / "copying.mp4"
    _touch(path, b"x" * 100, age_s=0.5, now=now)
    state = scan(tmp_path, set(), now=now)
    for size in (200, 300, 400):  # grows between ticks
        _touch(path, b"x" * size, age_s=0.5, now=now)
        state = scan(tmp_path, set(), state.pending, state.ignored, now=now)
        assert state.ready == []
    # unchanged size, but modified less than settle_s ago: still not taken
    state = scan(tmp_path, set(), state.pending, state.ignored, settle_s=5, now=now)
    assert state.ready == []
    state = scan(tmp_path, set(), state.pending, state.ignored, settle_s=5, now=now + 10)
    assert len(state.ready) == 1


def test_non_videos_partials_hidden_and_empty_files_are_skipped_once_with_a_reason(tmp_path):
    now = 1_000_000.0
    for name in ("notes.txt", "clip.mp4.part", ".hidden.mp4", "README"):
        _touch(tmp_path / name, age_s=60, now=now)
    _touch(tmp_path / "empty.mp4", b"", age_s=60, now=now)
    first = scan(tmp_path, set(), now=now)
    reasons = {p.name: r for p, r in first.skipped}
    assert reasons["notes.txt"].startswith("not a video file")
    assert reasons["clip.mp4.part"].startswith("partial download")
    assert reasons[".hidden.mp4"] == "hidden file"
    assert reasons["README"].startswith("not a video file")
    assert reasons["empty.mp4"].startswith("empty file")
    second = scan(tmp_path, set(), first.pending, first.ignored, now=now)
    assert second.skipped == [] and second.ready == []
    # the empty file fills up later: taken after it settles
    _touch(tmp_path / "empty.mp4", b"data" * 10, age_s=60, now=now)
    third = scan(tmp_path, set(), second.pending, second.ignored, now=now)
    fourth = scan(tmp_path, set(), third.pending, third.ignored, now=now)
    assert [p.name for _, p in fourth.ready] == ["empty.mp4"]


def test_symbolic_links_are_never_followed(tmp_path):
    now = 1_000_000.0
    inbox = tmp_path / "inbox"
    _touch(tmp_path / "elsewhere" / "real.mp4", age_s=60, now=now)
    inbox.mkdir()
    (inbox / "evil.mp4").symlink_to("/etc/passwd")
    (inbox / "video.mp4").symlink_to(tmp_path / "elsewhere" / "real.mp4")
    (inbox / "archive").symlink_to(tmp_path / "elsewhere", target_is_directory=True)
    first = scan(inbox, set(), now=now)
    second = scan(inbox, set(), first.pending, first.ignored, now=now)
    assert first.pending == {} and second.ready == []
    assert sorted(p.name for p, why in first.skipped if "symbolic link" in why) == ["archive", "evil.mp4", "video.mp4"]
    assert second.skipped == []  # reported once


def test_a_folder_named_like_a_video_is_skipped_with_a_reason_and_not_searched(tmp_path):
    """`d.mp4/` is not a video, and what it holds is not taken; other folders are searched."""
    now = 1_000_000.0
    _touch(tmp_path / "d.mp4" / "inside.mp4", age_s=60, now=now)
    _touch(tmp_path / "d.mp4" / "deeper" / "clip.avi", age_s=60, now=now)
    _touch(tmp_path / "2024" / "trip.mp4", age_s=60, now=now)
    first = scan(tmp_path, set(), now=now)
    second = scan(tmp_path, set(), first.pending, first.ignored, now=now)
    assert [p.relative_to(tmp_path.resolve()).as_posix() for _, p in second.ready] == ["2024/trip.mp4"]
    assert [(p.name, why.split(":")[0]) for p, why in first.skipped] == [("d.mp4", "a folder named like a video (.mp4), not a video")]
    assert "d.mp4/inside.mp4" not in first.pending and second.skipped == []  # reported once


def test_a_bucket_key_under_a_folder_named_like_a_video_is_skipped(tmp_path):
    """Buckets have no folders, only keys with slashes: `d.mp4/inside.mp4` is skipped the same way."""
    from reid_pipeline.ingest.arrivals import ScanResult, consider

    result = ScanResult()
    consider(result, "d.mp4/inside.mp4", "s3://bucket/in/d.mp4/inside.mp4", set(), {}, 0, 1_000_000.0,
             lambda: (100, "etag", 0.0))
    assert result.pending == {} and result.ready == []
    assert result.skipped == [("s3://bucket/in/d.mp4/inside.mp4", result.skipped[0][1])]
    assert result.skipped[0][1].startswith("inside d.mp4/: a folder named like a video (.mp4)")
