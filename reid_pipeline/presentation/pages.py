"""The HTML pages the pipeline writes (static gallery, silhouette report), from the jinja2
templates under `reid_pipeline/presentation/templates/pages/`, with autoescaping: file names and values
from videos are text, never markup."""

from __future__ import annotations

import jinja2


def plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def spread(n_total: int, n_pick: int) -> list[int]:
    """`n_pick` indices spread evenly over range(n_total), from the first to the last (all
    of them when there are no more): which faces of a sighting a page or a sheet shows."""
    if n_total <= n_pick:
        return list(range(n_total))
    return [round(i * (n_total - 1) / (n_pick - 1)) for i in range(n_pick)] if n_pick > 1 else [0]


_ENV = jinja2.Environment(
    loader=jinja2.PackageLoader("reid_pipeline.presentation", "templates/pages"),
    autoescape=True,
    undefined=jinja2.StrictUndefined,
)
_ENV.filters["plural"] = plural


def render(template: str, **values) -> str:
    """One page: `template` is gallery, identity or silhouette."""
    return _ENV.get_template(f"{template}.html").render(**values)
