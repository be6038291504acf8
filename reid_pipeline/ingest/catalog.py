"""What the archive holds, apart from processing it: registering every video under a folder
or bucket prefix as a partition key with its source (nothing is analysed), finding the
partition keys that name no registered video, and a status snapshot of the videos (the
facts `reid status` prints). The CLI and the Dagster jobs and sensors call these."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from reid_pipeline.ingest.inbox import scan_source
from reid_pipeline.ingest.sources import file_name
from reid_pipeline.store import Store


@dataclass
class Registration:
    registered: list[tuple[str, str]] = field(default_factory=list)  # (partition key, source URI), new ones
    known: list[tuple[str, str, str]] = field(default_factory=list)  # (key, source URI, status): registered before
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (location, reason): not a video, empty, a link...

    @property
    def keys(self) -> list[str]:
        """The partition keys of the new videos."""
        return [key for key, _ in self.registered]

    @property
    def all_keys(self) -> list[str]:
        """The partition keys of every video found: new ones, then those known before."""
        return self.keys + [key for key, _, _ in self.known]

    def known_by_status(self) -> dict[str, int]:
        """How many of the videos known before are in each status, most first."""
        counts: dict[str, int] = {}
        for _, _, status in self.known:
            counts[status] = counts.get(status, 0) + 1
        return dict(sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))

    def summary(self) -> str:
        """e.g. "2 new, 2 already known (1 ready, 1 processing)"."""
        statuses = ", ".join(f"{n} {status}" for status, n in self.known_by_status().items())
        return f"{len(self.registered)} new, {len(self.known)} already known" + (f" ({statuses})" if statuses else "")


def check_source(source: str) -> None:
    """ValueError unless `source` is a folder here or an s3:// location."""
    from reid_pipeline.ingest.buckets import is_s3_uri

    if not is_s3_uri(source) and not Path(source).is_dir():
        raise ValueError(f"{source}: not a folder on this machine, nor an s3://bucket/prefix location")


def register_archive(store: Store, source: str, endpoint_url: str | None = None) -> Registration:
    """Register every video under `source` now (a folder, searched recursively, or
    `s3://bucket/prefix`) in the `videos` table: two listings, the second taking each file
    that did not change since the first. Videos registered before are reported apart, with
    their status (`known`), and left as they are. Analyses nothing; the caller adds the keys
    as partitions."""
    check_source(source)
    listing = scan_source(source, set(), settle_s=0, endpoint_url=endpoint_url)
    result = scan_source(source, set(), listing.pending, listing.ignored, 0, endpoint_url)
    registration = Registration(skipped=[(str(where), reason) for where, reason in listing.skipped])
    found = [(key, str(uri)) for key, uri in result.ready]
    status = {r["partition_key"]: r["status"] for r in store.video_rows(keys=[key for key, _ in found])}
    for key, uri in found:
        store.register_video(key, uri)  # a no-op for a known video; an error if its key is another file's
        if key in status:
            registration.known.append((key, uri, status[key]))
        else:
            registration.registered.append((key, uri))
    return registration


def stray_partitions(store: Store, partition_keys: Iterable[str]) -> list[str]:
    """The keys (of `partition_keys`, in order) that no registered video backs: typed into
    the UI's "Add a partition" box, say. Their runs fail; they only clutter the counts."""
    keys = list(partition_keys)
    registered = {r["partition_key"] for r in store.video_rows(keys=keys)}
    return [k for k in keys if k not in registered]


@dataclass
class StatusSnapshot:
    counts: dict[str, int]  # videos per status
    videos: list[dict]  # key, file, status, faces, sequences, identities, reason: failures first, then newest
    skipped: list[dict]  # location, reason: files not taken
    total: int  # videos in the store (`videos` may list fewer)

    def fingerprint(self) -> str:
        import hashlib
        import json

        payload = json.dumps([self.counts, self.videos, self.skipped], sort_keys=True, default=str)
        return hashlib.sha1(payload.encode()).hexdigest()


def status_snapshot(store: Store, limit: int = 100) -> StatusSnapshot:
    """Per video what `reid status` prints: every failed or partial video (with its reason)
    first, then the newest up to `limit` in all; and the files that were not taken."""
    counts, failed = store.status_summary()
    newest = store.video_table(limit)
    failing = {r["partition_key"] for r in failed}
    rows = [v for v in newest if v["partition_key"] in failing]
    missing = failing - {v["partition_key"] for v in rows}
    if missing:
        rows += [v for v in store.video_table(None) if v["partition_key"] in missing]
    rows += [v for v in newest if v["partition_key"] not in failing]
    videos = []
    for v in rows[: max(limit, len(failing))]:
        reason = v["error"] or (f"duplicate of {v['duplicate_of']}" if v["duplicate_of"] else "")
        videos.append({"key": v["partition_key"], "file": file_name(v["source_uri"]) or v["source_uri"], "status": v["status"],
                       "faces": v["faces"], "sequences": v["sequences"], "identities": v["identities"], "reason": reason})
    skipped = [{"location": s["location"], "reason": s["reason"]} for s in store.skipped_files()]
    return StatusSnapshot({r["status"]: r["videos"] for r in counts}, videos, skipped, sum(r["videos"] for r in counts))
