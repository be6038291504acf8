"""Small pictures for people: contact sheets of face chips, as PNG bytes and markdown."""

from __future__ import annotations

import base64
from collections.abc import Sequence

import cv2
import numpy as np

from reid_pipeline.faces.chips import decode_jpeg


def contact_sheet(chips_jpeg: Sequence[bytes], labels: Sequence[str] | None = None, thumb: int = 72, cols: int = 8) -> bytes:
    """A grid of face chips (JPEG bytes) with optional captions, as PNG bytes."""
    n = max(1, len(chips_jpeg))
    rows = (n + cols - 1) // cols
    cap_h = 14 if labels else 0
    sheet = np.full((rows * (thumb + cap_h), min(n, cols) * thumb, 3), 255, dtype=np.uint8)
    for i, data in enumerate(chips_jpeg):
        r, c = divmod(i, cols)
        y, x = r * (thumb + cap_h), c * thumb
        sheet[y : y + thumb, x : x + thumb] = cv2.resize(decode_jpeg(data), (thumb, thumb), interpolation=cv2.INTER_AREA)
        if labels:
            cv2.putText(sheet, str(labels[i])[:12], (x + 2, y + thumb + 11), cv2.FONT_HERSHEY_SIMPLEX, 0.33, (40, 40, 40), 1, cv2.LINE_AA)
    ok, buf = cv2.imencode(".png", sheet)
    return buf.tobytes()


def markdown_image(png: bytes, alt: str = "preview") -> str:
    """Dagster has no image metadata type: embed the PNG in markdown as a data URI."""
    return f"![{alt}](data:image/png;base64,{base64.b64encode(png).decode()})"


def spread(n_total: int, n_pick: int) -> list[int]:
    """`n_pick` indices spread evenly over range(n_total)."""
    if n_total <= n_pick:
        return list(range(n_total))
    return [round(i * (n_total - 1) / (n_pick - 1)) for i in range(n_pick)] if n_pick > 1 else [0]
