"""Pictures for people, as PNG bytes: sheets of face chips (OpenCV) and the silhouette and
projection plots (matplotlib), plus the markdown that embeds a PNG in Dagster metadata.

Every grid of chips goes through `chip_sheet`: rows of chips, each row with an optional
label on its left and each chip with an optional caption under it. matplotlib and
scikit-learn are imported on first use of a plot, so drawing a sheet (`reid evidence`, the
assets' previews) never loads them.
"""

from __future__ import annotations

import base64
import functools
from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np

from reid_pipeline.faces.chips import decode_jpeg
from reid_pipeline.presentation.pages import plural
from reid_pipeline.sequences.silhouette import BANDS, Silhouette

_FONT = cv2.FONT_HERSHEY_SIMPLEX
_LABEL_SCALE, _CAPTION_SCALE = 0.4, 0.33
_INK = (30, 30, 30)
_LINE_H, _CAPTION_H, _GAP = 16, 14, 4


@dataclass
class SheetRow:
    chips: Sequence[bytes]  # JPEG
    label: str = ""  # drawn left of the chips; "\n" separates lines
    captions: Sequence[str] = ()  # drawn under the chips, one each


def _text_width(text: str, scale: float) -> int:
    return cv2.getTextSize(text, _FONT, scale, 1)[0][0]


def _fit(text: str, width: int, scale: float) -> str:
    """`text`, cut short so that it fits `width` pixels."""
    while text and _text_width(text, scale) > width:
        text = text[:-1]
    return text


def _png(image: np.ndarray) -> bytes:
    ok, buf = cv2.imencode(".png", image)
    if not ok:
        raise ValueError("could not encode a picture as PNG")
    return buf.tobytes()


def chip_sheet(rows: Sequence[SheetRow], thumb: int = 64) -> bytes:
    """The one grid drawer: a row of `thumb`-pixel chips per `SheetRow`, its label in a column
    on the left (as wide as the widest label line), captions under the chips. PNG bytes."""
    lines = [row.label.split("\n") if row.label else [] for row in rows]
    widest = max((_text_width(line, _LABEL_SCALE) for rows_lines in lines for line in rows_lines), default=0)
    label_w = widest + 12 if widest else 0
    caption_h = _CAPTION_H if any(row.captions for row in rows) else 0
    heights = [max(thumb + caption_h, _LINE_H * len(row_lines) + 6) + _GAP for row_lines in lines]
    cols = max([len(row.chips) for row in rows] + [1])
    sheet = np.full((max(sum(heights), thumb), label_w + cols * thumb, 3), 255, np.uint8)
    y = 0
    for row, row_lines, height in zip(rows, lines, heights):
        for k, line in enumerate(row_lines):
            cv2.putText(sheet, line, (4, y + 16 + _LINE_H * k), _FONT, _LABEL_SCALE, _INK, 1, cv2.LINE_AA)
        for c, data in enumerate(row.chips):
            x = label_w + c * thumb
            sheet[y : y + thumb, x : x + thumb] = cv2.resize(decode_jpeg(data), (thumb, thumb), interpolation=cv2.INTER_AREA)
            if c < len(row.captions):
                caption = _fit(str(row.captions[c]), thumb - 4, _CAPTION_SCALE)
                cv2.putText(sheet, caption, (x + 2, y + thumb + 11), _FONT, _CAPTION_SCALE, _INK, 1, cv2.LINE_AA)
        y += height
    return _png(sheet)


def contact_sheet(chips: Sequence[bytes], captions: Sequence[str] = (), thumb: int = 72, cols: int = 8) -> bytes:
    """Chips (JPEG) in rows of `cols`, each with its caption under it."""
    return chip_sheet([SheetRow(chips[i : i + cols], captions=captions[i : i + cols]) for i in range(0, len(chips), cols)], thumb)


def sequence_label(sequence: dict, extra: str = "") -> str:
    """A sequence's label on a sheet: its number in the video, time span and face count."""
    return (f"sequence {sequence['sequence_number']}\n{sequence['start_s']:.1f}-{sequence['end_s']:.1f} s\n"
            f"{plural(sequence['face_count'], 'face')}{extra}")


def markdown_image(png: bytes, alt: str = "preview") -> str:
    """Dagster has no image metadata type: embed the PNG in markdown as a data URI."""
    return f"![{alt}](data:image/png;base64,{base64.b64encode(png).decode()})"


# plots --------------------------------------------------------------------------------


@functools.cache
def _pyplot():
    """matplotlib (headless), imported on first use: it and scikit-learn cost about two
    seconds at import, which every process that loads the Dagster definitions would pay."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _figure_png(fig) -> bytes:
    fig.tight_layout()
    fig.canvas.draw()
    rgba = np.asarray(fig.canvas.buffer_rgba())
    _pyplot().close(fig)
    return _png(cv2.cvtColor(rgba, cv2.COLOR_RGBA2BGR))


def _colour(i: int):
    return _pyplot().get_cmap("tab20")(i % 20)


def silhouette_plot(result: Silhouette, sequence_numbers: np.ndarray) -> bytes:
    """The classic silhouette plot: one bar per face, grouped and sorted per sequence, the
    mean and the bands' limits as vertical lines."""
    fig, ax = _pyplot().subplots(figsize=(6, 4), dpi=90)
    y = 0
    for sid in result.per_sequence:
        values = result.per_face[sequence_numbers == sid]
        values = np.sort(values[~np.isnan(values)])
        ax.fill_betweenx(np.arange(y, y + len(values)), 0, values, color=_colour(sid), alpha=0.85)
        ax.text(-0.05, y + len(values) / 2, str(sid), fontsize=7, ha="right", va="center")
        y += len(values) + 2
    if result.mean is not None:
        ax.axvline(result.mean, color="red", linestyle="--", label=f"mean {result.mean:.2f} ({result.band})")
    for k, (limit, _) in enumerate(BANDS):
        ax.axvline(limit, color="grey", linewidth=0.5, label="band limits (strong, reasonable, weak)" if k == 0 else None)
    ax.legend(loc="lower right", fontsize=7)
    ax.set_xlim(-0.4, 1.0)
    ax.set_yticks([])
    ax.set_xlabel("silhouette coefficient (cosine)")
    ax.set_ylabel("faces scored, grouped by sequence")
    ax.set_title(result.note or f"{result.scored_faces} faces in {result.scored_sequences} sequences", fontsize=10)
    return _figure_png(fig)


def projection_plot(embeddings: np.ndarray, sequence_numbers: np.ndarray, legend_max: int = 12) -> bytes:
    """Faces projected to 2-D (PCA of the embeddings), one colour per sequence; grey crosses
    have no sequence. The legend names the first `legend_max` sequences and says how many
    more there are; each sequence's number also marks its centre."""
    fig, ax = _pyplot().subplots(figsize=(7, 4), dpi=90)
    n_sequences = 0
    if len(embeddings) >= 2:
        from sklearn.decomposition import PCA

        points = PCA(n_components=2, random_state=0).fit_transform(embeddings)
        none = sequence_numbers < 0
        if none.any():
            ax.scatter(points[none, 0], points[none, 1], c="lightgrey", marker="x", s=14, label="no sequence (rejected)")
        shown = np.unique(sequence_numbers[~none])
        n_sequences = len(shown)
        for k, sid in enumerate(shown):
            sel = sequence_numbers == sid
            ax.scatter(points[sel, 0], points[sel, 1], color=_colour(int(sid)), s=14,
                       label=f"sequence {int(sid)}" if k < legend_max else None)
            cx, cy = points[sel].mean(axis=0)
            ax.annotate(str(int(sid)), (cx, cy), fontsize=8, weight="bold")
        if n_sequences > legend_max:
            ax.scatter([], [], color="white", label=f"... {n_sequences - legend_max} more sequences")
    handles, _ = ax.get_legend_handles_labels()
    if handles:
        ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=7, title="colour", title_fontsize=7)
    ax.set_title(f"{len(embeddings)} faces of {n_sequences} sequences (PCA of embeddings)", fontsize=10)
    ax.set_xlabel("first principal component")
    ax.set_ylabel("second principal component")
    ax.set_xticks([])
    ax.set_yticks([])
    return _figure_png(fig)
