"""The pictures: one grid drawer for every sheet of chips, plots that say what they show."""

import subprocess
import sys

import cv2
import numpy as np

from reid_pipeline.faces.chips import encode_jpeg
from reid_pipeline.presentation import pictures
from reid_pipeline.presentation.pictures import SheetRow, chip_sheet, contact_sheet
from reid_pipeline.sequences.silhouette import silhouette


def _chip(value: int) -> bytes:
    return encode_jpeg(np.full((150, 150, 3), value, np.uint8))


def _image(png: bytes) -> np.ndarray:
    return cv2.imdecode(np.frombuffer(png, np.uint8), cv2.IMREAD_COLOR)


def test_a_sheet_has_a_label_column_as_wide_as_its_labels_and_a_row_per_sequence():
    short = _image(chip_sheet([SheetRow([_chip(0)] * 3, "a")], thumb=64))
    long = _image(chip_sheet([SheetRow([_chip(0)] * 3, "a much longer label line\nsecond"), SheetRow([_chip(0)], "b")], thumb=64))
    assert short.shape[1] < long.shape[1]
    assert long.shape[0] > short.shape[0]  # two rows
    # the chips are where the grid puts them: right of the label column, black on white
    label_w = long.shape[1] - 3 * 64
    assert long[10:50, label_w + 5 : label_w + 60].max() < 40
    assert long[10:50, label_w + 64 * 2 + 5 : label_w + 64 * 3 - 5].max() < 40
    assert long[:, :label_w].min() < 100  # the label's ink
    # the second row has one chip: the rest of it stays white
    y = long.shape[0] - 30
    assert long[y, label_w + 70 :].min() > 200


def test_a_contact_sheet_wraps_chips_into_rows_with_captions_under_them():
    png = _image(contact_sheet([_chip(0)] * 10, [f"{i}.0s" for i in range(10)], thumb=72, cols=4))
    assert png.shape[1] == 4 * 72
    assert png.shape[0] >= 3 * (72 + 14)
    caption = png[72 : 72 + 14, :72]
    assert caption.min() < 150 and caption.max() > 200  # ink on white under the first chip


def test_a_sheet_without_rows_is_a_blank_picture():
    assert _image(chip_sheet([])).min() == 255


def test_drawing_a_sheet_loads_neither_matplotlib_nor_scikit_learn():
    code = ("import sys; import reid_pipeline.presentation.evidence, reid_pipeline.presentation.pictures as p;"
            "p.contact_sheet([]);"
            "print(sorted(m for m in ('matplotlib', 'sklearn') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def _figure_of(monkeypatch, draw):
    figures = []
    monkeypatch.setattr(pictures, "_figure_png", lambda fig: figures.append(fig) or b"")
    draw()
    [fig] = figures
    [ax] = fig.axes
    return ax


def test_the_projection_plot_has_labelled_axes_and_a_legend(monkeypatch):
    rng = np.random.default_rng(0)
    vectors = rng.normal(size=(40, 16))
    ids = np.repeat(np.arange(20), 2)
    ids[0] = -1
    ax = _figure_of(monkeypatch, lambda: pictures.projection_plot(vectors, ids, legend_max=12))
    assert ax.get_xlabel() and ax.get_ylabel()
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert labels[0] == "no sequence (rejected)"
    assert "sequence 0" in labels and "sequence 11" in labels and "sequence 12" not in labels
    assert labels[-1] == "... 8 more sequences"


def test_the_silhouette_plot_has_labelled_axes_and_a_legend(monkeypatch):
    rng = np.random.default_rng(1)
    centres = rng.normal(size=(3, 16))
    vectors = np.repeat(centres, 5, axis=0) + 0.05 * rng.normal(size=(15, 16))
    ids = np.repeat(np.arange(3), 5)
    result = silhouette(vectors, ids)
    ax = _figure_of(monkeypatch, lambda: pictures.silhouette_plot(result, ids))
    assert ax.get_xlabel() == "silhouette coefficient (cosine)" and ax.get_ylabel()
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert labels[0].startswith("mean ") and "band limits" in labels[1]
