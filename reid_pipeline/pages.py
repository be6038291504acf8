"""The HTML pages the pipeline writes (static gallery, silhouette report), from jinja2
templates with autoescaping: file names and values from videos are text, never markup."""

from __future__ import annotations

import jinja2

_BASE = """<!doctype html><html><head><meta charset="utf-8"><title>{{ title }}</title>
<style>
body{font-family:system-ui,sans-serif;margin:24px;background:#fafafa;color:#222}
h1{font-size:22px} h2{font-size:17px;margin-top:28px}
.grid{display:flex;flex-wrap:wrap;gap:14px}
.card{background:#fff;border:1px solid #ddd;border-radius:8px;padding:8px;width:150px;text-align:center;text-decoration:none;color:#222}
.card img{width:128px;height:128px;object-fit:cover;border-radius:6px}
.meta{font-size:12px;color:#555}
table{border-collapse:collapse;background:#fff} td,th{border:1px solid #ddd;padding:6px 10px;font-size:13px;vertical-align:middle}
td img{width:72px;height:72px;object-fit:cover;border-radius:4px}
</style></head><body>{% block body %}{% endblock %}</body></html>"""

_GALLERY = """{% extends "base" %}{% block body %}
<h1>{{ title }}</h1><p class="meta">{{ cards|length }} identities, people seen in most videos first</p>
<div class="grid">{% for c in cards %}
<a class="card" href="{{ c.page }}"><img src="{{ c.thumb }}" alt="face of {{ c.identity_id }}"><div>{{ c.label or c.identity_id }}</div>
<div class="meta">{{ c.videos|plural("video") }}, {{ c.sightings|plural("sighting") }}, {{ c.faces|plural("face") }}</div></a>
{% endfor %}</div>
{% if unresolved %}<h2>Unresolved sequences ({{ unresolved|length }})</h2>
<p class="meta">too short to stand as a person of their own and not reliably linked to anyone</p>
<div class="grid">{% for u in unresolved %}
<div class="card"><img src="{{ u.thumb }}" alt="unresolved sighting"><div>{{ u.file }}</div>
<div class="meta">sequence {{ u.sequence_id }}, {{ "%.1f"|format(u.start_s) }}-{{ "%.1f"|format(u.end_s) }} s<br>{{ u.reason }}</div></div>
{% endfor %}</div>{% endif %}
{% endblock %}"""

_IDENTITY = """{% extends "base" %}{% block body %}
<p><a href="index.html">all identities</a></p><h1>{{ title }}</h1>
<p class="meta">seen in {{ videos|plural("video") }}, {{ rows|length|plural("sighting") }}</p>
<table><tr><th>face</th><th>video</th><th>sequence</th><th>time</th><th>faces</th></tr>
{% for s in rows %}<tr><td><img src="{{ s.thumb }}" alt="sighting"></td><td>{{ s.file }}<div class="meta">{{ s.partition_key }}
{%- if s.get("video_status") == "partial" %} (partial video: truncated){% endif %}</div></td>
<td>{{ s.sequence_id }}</td><td>{{ "%.1f"|format(s.start_s) }}-{{ "%.1f"|format(s.end_s) }} s</td><td>{{ s.face_count }}</td></tr>
{% endfor %}</table>
{% endblock %}"""

_SILHOUETTE = """{% extends "base" %}{% block body %}
<h1>{{ title }}</h1><p>mean silhouette: {{ mean }} ({{ band }}); {{ faces }} faces in {{ sequences }} sequences;
{{ singletons }} singleton sequences left out. {{ note }}</p>
{% for name in pictures %}<h2>{{ name }}</h2><img src="{{ name }}.png">{% endfor %}
{% endblock %}"""


def plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


_ENV = jinja2.Environment(
    loader=jinja2.DictLoader({"base": _BASE, "gallery": _GALLERY, "identity": _IDENTITY, "silhouette": _SILHOUETTE}),
    autoescape=True,
    undefined=jinja2.StrictUndefined,
)
_ENV.filters["plural"] = plural


def render(template: str, **values) -> str:
    """One page: `template` is gallery, identity or silhouette."""
    return _ENV.get_template(template).render(**values)
