"""`reid identity`: people's corrections of the identities (merge, split, not-same, label,
hide), listed and undone; each recorded as a constraint, then the identities recomputed."""

from __future__ import annotations

import argparse
import sys

from reid_pipeline.cli.environment import open_store, prepare
from reid_pipeline.cli.execution import code_location
from reid_pipeline.cli.runs import report_identities
from reid_pipeline.config import Settings
from reid_pipeline.store import Store


def sightings(store: Store, text: str) -> tuple[list[int], str]:
    """Sequence row ids named by `text`: an identity id (person-...), PARTITION_KEY:SEQUENCE_NUMBER
    or PARTITION_KEY@SECONDS (the one sequence on screen then). ValueError saying why not."""
    from reid_pipeline.identities import corrections

    if text.startswith("person-"):
        try:
            return corrections.identity_sequences(store, text)[1], text
        except KeyError as exc:
            raise ValueError(f"{exc.args[0]} (see `reid search` or the gallery)") from exc
    key, sep, rest = text.rpartition("@") if "@" in text else text.rpartition(":")
    try:
        number = float(rest) if sep == "@" else int(rest)
    except ValueError:
        number = None
    if not sep or number is None:
        raise ValueError(f"{text!r}: want an identity id (person-...), PARTITION_KEY:SEQUENCE_NUMBER or PARTITION_KEY@SECONDS")
    rows = store.sequences_at(key, time_s=number) if sep == "@" else store.sequences_at(key, sequence_number=int(number))
    if not rows:
        raise ValueError(f"{text}: no sequence there (see `reid status` for partition keys)")
    if len({r["sequence_number"] for r in rows}) > 1:
        raise ValueError(f"{text}: {len(rows)} people on screen then; name one: "
                         + ", ".join(f"{key}:{r['sequence_number']}" for r in rows))
    return [rows[0]["id"]], f"{key}:{rows[0]['sequence_number']}"


def cmd_identity(args: argparse.Namespace) -> int:
    """Correct the identities: merge, split (move a sighting out), not-same, label, hide;
    list the corrections or undo one. Each correction is a constraint that every
    recomputation obeys; the identities are recomputed at once (unless --no-rebuild)."""
    from reid_pipeline.identities import corrections

    store = open_store(Settings())
    if args.action == "corrections":
        rows = store.correction_listing()
        if not rows:
            print("no corrections")
        for c in rows:
            states = "; ".join(f"{s['status']}: {s['detail']}" for s in c["statuses"]) or "not applied yet"
            print(f"#{c['id']:<4} {c['kind']:11} {c['note']}  [{states}]")
        return 0
    try:
        if args.action == "undo":
            if not all(store.delete_correction(int(n)) for n in args.targets):
                print("reid: no such correction (see `reid identity corrections`)", file=sys.stderr)
                return 1
            made = None
        elif args.action == "merge":
            if len(args.targets) < 2:
                raise ValueError("merge wants two or more identity ids")
            made = corrections.merge(store, args.targets)
        elif args.action == "split":
            ids = [i for t in args.targets for i in sightings(store, t)[0]]
            made = [corrections.move_out(store, i) for i in ids][-1]
        elif args.action == "not-same":
            if len(args.targets) != 2:
                raise ValueError("not-same wants two identities or sightings")
            (a, name_a), (b, name_b) = (sightings(store, t) for t in args.targets)
            made = corrections.not_same(store, a, b, note=f"{name_a} is not {name_b}")
        elif args.action == "label":
            if len(args.targets) != 2:
                raise ValueError('label wants an identity id and a label (quote it: "Aunt May"; "" clears it)')
            made = corrections.label(store, args.targets[0], args.targets[1])
        else:  # hide
            made = [corrections.hide(store, t) for t in args.targets][-1]
    except (KeyError, ValueError) as exc:
        print(f"reid: {exc.args[0] if exc.args else exc}", file=sys.stderr)
        return 1
    if made is not None:
        print(f"recorded correction #{made}")
    if args.no_rebuild:
        return 0
    prepare(Settings())
    defs, instance = code_location()
    report_identities(defs, instance)
    for s in store.correction_status(made) if made is not None else []:
        print(f"correction #{made} ({s['model']}): {s['status']}: {s['detail']}")
    return 0
