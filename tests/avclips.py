"""Test files made with PyAV (FFmpeg's libraries, no ffmpeg binary): an mp4 encoded from a
synthetic scene, the same cut with an edit list as `ffmpeg -ss 1 -i clip.mp4 -t 3 -c copy`
writes it, and an audio-only file."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from tests import synthetic


def encode_mp4(scene, path: Path, fps: int = 10, gop: int = 25) -> Path:
    """`scene` rendered to an MPEG-4 Part 2 mp4 (FFmpeg's own encoder), a key frame every
    `gop` frames (2.5 s at 10 fps)."""
    width, height = scene.size
    with av.open(str(path), "w") as out:
        stream = out.add_stream("mpeg4", rate=fps)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.codec_context.gop_size = gop
        stream.codec_context.options = {"qscale": "3"}
        for image, _ in synthetic.render_frames(scene):
            for packet in stream.encode(av.VideoFrame.from_ndarray(image, format="bgr24")):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return path


def cut_with_edit_list(src: Path, dst: Path, start_s: float, length_s: float, options: dict | None = None) -> Path:
    """Stream copy of `length_s` seconds from `start_s`, as `ffmpeg -ss START -i SRC -t LENGTH
    -c copy DST` does it: the packets from the key frame before `start_s` on are copied with
    their times shifted by `start_s`, so the first ones are negative; the mp4 muxer writes
    an edit list that hides them (the sample table still counts them)."""
    with av.open(str(src)) as inp, av.open(str(dst), "w", options=options or {}) as out:
        vin = inp.streams.video[0]
        vout = out.add_stream_from_template(vin)
        shift, end = int(Fraction(start_s) / vin.time_base), int(Fraction(start_s + length_s) / vin.time_base)
        packets = [p for p in inp.demux(vin) if p.pts is not None]
        first = max(p.pts for p in packets if p.is_keyframe and p.pts <= shift)
        assert first < shift, "the cut must start between key frames for the edit list to hide frames"
        for packet in packets:
            if first <= packet.pts < end:
                packet.pts -= shift
                packet.dts -= shift
                packet.stream = vout
                out.mux(packet)
    return dst


def audio_only(path: Path, seconds: float = 2.0, rate: int = 16000) -> Path:
    """A sine tone in AAC, in whatever container `path`'s suffix names (.m4a, .mp4, ...)."""
    with av.open(str(path), "w") as out:
        stream = out.add_stream("aac", rate=rate)
        stream.layout = "mono"
        t = np.arange(int(seconds * rate)) / rate
        tone = (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)[None, :]
        for start in range(0, tone.shape[1], 1024):
            frame = av.AudioFrame.from_ndarray(tone[:, start : start + 1024], format="fltp", layout="mono")
            frame.sample_rate = rate
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return path
