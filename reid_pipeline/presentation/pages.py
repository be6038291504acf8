"""The HTML pages the pipeline writes (static gallery, silhouette report), from the jinja2
templates under `reid_pipeline/templates/pages/`, with autoescaping: file names and values
from videos are text, never markup."""

from __future__ import annotations

import jinja2


def plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


_ENV = jinja2.Environment(
    loader=jinja2.PackageLoader("reid_pipeline", "templates/pages"),
    autoescape=True,
    undefined=jinja2.StrictUndefined,
)
_ENV.filters["plural"] = plural


def render(template: str, **values) -> str:
    """One page: `template` is gallery, identity or silhouette."""
    return _ENV.get_template(f"{template}.html").render(**values)
