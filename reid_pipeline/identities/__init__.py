"""Identities: sequences recognised again across the archive, as anonymous identities.

- `matching`: set-to-set similarity of two sequences and the per-model thresholds of a link;
- `archive`: matching a video against the archive, recomputing identities, search;
- `clustering`: identities from the match graph, deterministic, with ids kept across runs;
- `corrections`: people's corrections, kept as constraints every recomputation obeys;
- `forget`: removing a video or a person everywhere, with a record that it was done.

May import: `sequences`, `faces`, `ingest`, `store` and the top modules.
"""
