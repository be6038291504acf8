#!/usr/bin/env python
"""Scale: a large synthetic archive in the embedded Postgres + pgvector, and what matching costs.

One run, one process, a private embedded server under /tmp (stopped and removed at the end):

1. generate (numpy, seeded) identity centres in 128-d (dlib's dimension), sequences of ~10
   faces each (person centre + sequence offset + per-face noise, unit length), videos of
   20 sequences each; the noise is tuned so that faces of one sequence have cosine ~0.96,
   faces of one person in different sequences ~0.91-0.95, different people ~0.75 (up to
   ~0.9 for the closest pairs), roughly as dlib behaves on real faces;
2. load by binary COPY (pgvector's psycopg adapter, as `Store.replace_faces` does) with
   the per-model HNSW indexes dropped, then build them (`Store.ensure_model`'s DDL), timed
   apart for sequences and faces; the faces build is watched and, when it would overrun
   `--faces-index-budget`, cancelled and built on a subset instead (reported, extrapolated);
3. one NEW video (archive people + new people) goes in through `Store.replace_faces` /
   `replace_sequences` with the indexes in place, then `archive.match_partition` runs
   several times (per-sequence ms, with the time split by store call) and
   `Store.nearest_sequences` alone is timed;
4. recall@10 of the HNSW indexes against exact search (numpy, cross-checked in Postgres
   with index scans off) at several `hnsw.ef_search`;
5. table and index sizes, machine facts; writes <out>/scale.md and <out>/scale.json.

    .venv/bin/python bench/scale.py [--faces 1000000] [--sequences 100000] [--dim 128] [--out bench/out/scale]
    .venv/bin/python bench/scale.py --faces 20000 --sequences 2000     # quick check, under a minute
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import shutil
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import polars as pl
import psycopg
from machine import loadavg, machine_facts  # bench/machine.py (the script's folder is on sys.path)

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from reid_pipeline.config import Settings  # noqa: E402
from reid_pipeline.database import embedded_server  # noqa: E402
from reid_pipeline.identities.archive import match_partition  # noqa: E402
from reid_pipeline.identities.matching import MatchSettings, robust_hausdorff_similarity  # noqa: E402
from reid_pipeline.store import Store, connect, hnsw_index_name  # noqa: E402

MODEL, BACKEND = "dlib_resnet_v1", "dlib"
SEQUENCES_PER_VIDEO = 20
VIDEO_S, VIDEO_FPS, SAMPLE_FPS = 300.0, 25.0, 4.0


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--faces", type=int, default=1_000_000, help="face vectors in the archive (about)")
    p.add_argument("--sequences", type=int, default=100_000, help="sequences in the archive")
    p.add_argument("--people", type=int, default=None, help="identities (default sequences / 5)")
    p.add_argument("--dim", type=int, default=128)
    p.add_argument("--seed", type=int, default=4)
    p.add_argument("--maintenance-work-mem", default="3GB")
    p.add_argument("--parallel-workers", type=int, default=1, help="max_parallel_maintenance_workers")
    p.add_argument("--faces-index", choices=("auto", "full", "subset", "skip"), default="auto",
                   help="auto: build on all faces, cancel and fall back to --faces-subset when the "
                        "watched progress projects past --faces-index-budget")
    p.add_argument("--faces-index-budget", type=float, default=900.0, help="seconds (default 900)")
    p.add_argument("--faces-subset", type=int, default=250_000)
    p.add_argument("--match-runs", type=int, default=7, help="match_partition repetitions (first reported apart)")
    p.add_argument("--nearest-rounds", type=int, default=5, help="rounds of nearest_sequences over the new video's 20 sequences")
    p.add_argument("--recall-queries", type=int, default=200)
    p.add_argument("--face-recall-queries", type=int, default=50)
    p.add_argument("--ef-search", default="40,100,200")
    p.add_argument("--out", type=Path, default=REPO / "bench" / "out" / "scale")
    p.add_argument("--keep", action="store_true", help="keep the database folder (and leave the server running)")
    return p.parse_args(argv)


# --------------------------------------------------------------------------- helpers


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=-1, keepdims=True)).astype(np.float32)


def pct(values, q) -> float:
    return float(np.percentile(np.asarray(values, float), q)) if len(values) else float("nan")


# --------------------------------------------------------------------------- synthetic data


class Generator:
    """Identity centres in a cone (a shared direction plus a decaying spectrum, as real face
    descriptors are far from isotropic), sequence offsets, per-face noise."""

    SHARED, SPECTRUM_ALPHA, SEQ_SIGMA, FACE_SIGMA = 1.7, 0.6, 0.18, 0.20

    def __init__(self, rng: np.random.Generator, dim: int, people: int):
        self.rng, self.dim = rng, dim
        spec = np.arange(1, dim + 1, dtype=np.float64) ** (-self.SPECTRUM_ALPHA)
        self.spec = np.sqrt(spec / spec.sum()).astype(np.float32)  # E|spec * g|^2 = 1
        self.shared = unit(rng.standard_normal(dim).astype(np.float32))
        self.centres = self.new_centres(people)
        popularity = rng.lognormal(0.0, 1.0, people)  # a few people show up very often
        self.popularity = popularity / popularity.sum()

    def new_centres(self, n: int) -> np.ndarray:
        g = self.rng.standard_normal((n, self.dim), dtype=np.float32) * self.spec
        return unit(self.SHARED * self.shared + g)

    def sequence_centres(self, centres: np.ndarray) -> np.ndarray:
        g = self.rng.standard_normal(centres.shape, dtype=np.float32) * self.spec
        return unit(centres + self.SEQ_SIGMA * g)

    def faces(self, seq_centres: np.ndarray, counts: np.ndarray) -> np.ndarray:
        base = np.repeat(seq_centres, counts, axis=0)
        noise = self.rng.standard_normal(base.shape, dtype=np.float32) / np.float32(math.sqrt(self.dim))
        return unit(base + self.FACE_SIGMA * noise)


def templates_of(vectors: np.ndarray, weights: np.ndarray, counts: np.ndarray) -> np.ndarray:
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    return unit(np.add.reduceat(vectors * weights[:, None], starts, axis=0))


def partition_key(i: int, seed: int) -> str:
    return f"v{i:05d}-{hashlib.sha256(f'synthetic-{seed}-{i}'.encode()).hexdigest()[:8]}"


def layout_videos(gen: Generator, n_videos: int, first_index: int, seed: int, mean_faces: float,
                  people_pool: np.ndarray | None = None, people_p: np.ndarray | None = None) -> dict:
    """Which person each sequence shows, when, and how many faces it has (videos of 20 sequences,
    ~12 people; a person's sequences within one video never overlap in time)."""
    rng = gen.rng
    pool = people_pool if people_pool is not None else np.arange(len(gen.centres))
    p = people_p if people_p is not None else gen.popularity
    keys, seq_video, seq_person, seq_id, start_s, counts = [], [], [], [], [], []
    for v in range(n_videos):
        keys.append(partition_key(first_index + v, seed))
        cast = rng.choice(pool, size=12, p=p)
        people = np.concatenate([cast, rng.choice(cast, SEQUENCES_PER_VIDEO - len(cast))])
        rng.shuffle(people)
        n = np.maximum(1, 1 + rng.poisson(mean_faces - 1, SEQUENCES_PER_VIDEO))
        seen: dict[int, int] = {}
        repeats = {int(x): int((people == x).sum()) for x in people}
        for s, person in enumerate(people.tolist()):
            j = seen.get(person, 0)
            seen[person] = j + 1
            window = VIDEO_S / repeats[person]
            span = min((n[s] - 1) / SAMPLE_FPS, window - 1.0)
            n[s] = min(n[s], int(span * SAMPLE_FPS) + 1)
            start_s.append(j * window + rng.uniform(0, window - span - 0.5))
            seq_video.append(v)
            seq_person.append(person)
            seq_id.append(s)
            counts.append(int(n[s]))
    return {
        "keys": keys,
        "seq_video": np.asarray(seq_video, np.int32),
        "seq_person": np.asarray(seq_person, np.int64),
        "seq_id": np.asarray(seq_id, np.int32),
        "start_s": np.asarray(start_s, np.float64),
        "counts": np.asarray(counts, np.int64),
    }


def build_rows(gen: Generator, lay: dict, centres: np.ndarray) -> dict:
    """Vectors and every column the schema wants, for the laid-out sequences."""
    rng = gen.rng
    counts = lay["counts"]
    seq_centres = gen.sequence_centres(centres[lay["seq_person"]])
    vectors = gen.faces(seq_centres, counts)
    n_faces = int(counts.sum())
    seq_of_face = np.repeat(np.arange(len(counts)), counts)
    first = np.concatenate([[0], np.cumsum(counts)[:-1]])
    k_in_seq = np.arange(n_faces) - first[seq_of_face]
    ts = lay["start_s"][seq_of_face] + k_in_seq / SAMPLE_FPS
    video_of_face = lay["seq_video"][seq_of_face]
    # detection ids: row number within the video
    video_first = np.searchsorted(video_of_face, np.arange(len(lay["keys"])))
    detection_id = np.arange(n_faces) - video_first[video_of_face]
    face_px = rng.uniform(50, 220, n_faces).astype(np.float32)
    cx, cy = rng.uniform(200, 1700, n_faces), rng.uniform(150, 900, n_faces)
    yaw = rng.normal(0, 20, n_faces).astype(np.float32)
    blur = rng.lognormal(4.0, 0.6, n_faces).astype(np.float32)
    quality = np.clip(rng.normal(0.8, 0.12, n_faces), 0.2, 1.0).astype(np.float32)
    templates = templates_of(vectors, quality, counts)
    end_s = lay["start_s"] + (counts - 1) / SAMPLE_FPS
    seq_best = first + np.asarray([int(np.argmax(quality[a:a + c])) for a, c in zip(first, counts)])
    return {
        "vectors": vectors,
        "templates": templates,
        "faces": {
            "video": video_of_face, "detection_id": detection_id, "frame_index": np.rint(ts * VIDEO_FPS).astype(np.int64),
            "timestamp_s": ts, "box": np.stack([cx - face_px / 2, cy - face_px / 2, cx + face_px / 2, cy + face_px / 2], 1),
            "detector_score": rng.uniform(0.3, 2.5, n_faces).astype(np.float32), "face_px": face_px, "blur": blur,
            "yaw": yaw, "pitch": rng.normal(0, 10, n_faces).astype(np.float32),
            "roll": rng.normal(0, 6, n_faces).astype(np.float32), "sequence_number": lay["seq_id"][seq_of_face],
            "quality_weight": quality,
        },
        "sequences": {
            "video": lay["seq_video"], "sequence_number": lay["seq_id"], "shot": np.zeros(len(counts), np.int64),
            "start_frame": np.rint(lay["start_s"] * VIDEO_FPS).astype(np.int64),
            "end_frame": np.rint(end_s * VIDEO_FPS).astype(np.int64), "start_s": lay["start_s"], "end_s": end_s,
            "face_count": counts, "mean_face_px": np.add.reduceat(face_px, first) / counts,
            "mean_blur": np.add.reduceat(blur, first) / counts, "mean_abs_yaw": np.add.reduceat(np.abs(yaw), first) / counts,
            "mean_quality": np.add.reduceat(quality, first) / counts, "best_detection_id": detection_id[seq_best],
        },
    }


def synthetic_stats(gen: Generator, rng: np.random.Generator, samples: int = 300) -> dict:
    """Cosine and robust-Hausdorff numbers of the generator (a sanity check on realism)."""
    centres = gen.centres[: min(len(gen.centres), 3000)]
    gram = centres @ centres.T
    off = gram[np.triu_indices(len(centres), 1)]
    within, same_x, rh_same, rh_close = [], [], [], []
    for i in range(min(samples, len(centres) - 1)):
        a = gen.faces(gen.sequence_centres(centres[[i]]), np.array([10]))
        b = gen.faces(gen.sequence_centres(centres[[i]]), np.array([10]))
        j = int(np.argsort(-gram[i])[1])
        c = gen.faces(gen.sequence_centres(centres[[j]]), np.array([10]))
        within.append(float((a @ a.T)[np.triu_indices(10, 1)].mean()))
        same_x.append(float((a @ b.T).mean()))
        rh_same.append(robust_hausdorff_similarity(a, b))
        rh_close.append(robust_hausdorff_similarity(a, c))
    r = lambda v: {"mean": round(float(np.mean(v)), 3), "p5": round(pct(v, 5), 3), "p95": round(pct(v, 95), 3)}
    return {
        "face_cos_within_sequence": r(within),
        "face_cos_same_person_other_sequence": r(same_x),
        "centre_cos_different_people": {**r(off), "max": round(float(off.max()), 3)},
        "robust_hausdorff_same_person": r(rh_same),
        "robust_hausdorff_closest_other_person": r(rh_close),
    }


# --------------------------------------------------------------------------- database work


FACE_COPY_COLUMNS = ("partition_key", "detection_id", "frame_index", "timestamp_s", "box", "detector_score", "face_px",
                     "blur", "yaw", "pitch", "roll", "model", "embedding", "sequence_number", "quality_weight")
FACE_COPY_TYPES = ["text", "int4", "int4", "float8", "float4[]", "float4", "float4", "float4", "float4", "float4",
                   "float4", "text", "vector", "int4", "float4"]
SEQ_COPY_COLUMNS = ("partition_key", "model", "sequence_number", "shot", "start_frame", "end_frame", "start_s", "end_s",
                    "face_count", "mean_face_px", "mean_blur", "mean_abs_yaw", "mean_quality", "best_detection_id",
                    "template")
SEQ_COPY_TYPES = ["text", "text", "int4", "int4", "int4", "int4", "float8", "float8", "int4", "float4", "float4",
                  "float4", "float4", "int4", "vector"]


def copy_videos(conn, keys: list[str], first_index: int) -> None:
    with conn.cursor().copy(
        "COPY videos (partition_key, source_uri, status, sha256, size_bytes, codec, fps, frame_count, duration_s,"
        " width, height, rotation, probed_at) FROM STDIN WITH (FORMAT BINARY)"
    ) as copy:
        copy.set_types(["text", "text", "text", "text", "int8", "text", "float8", "int4", "float8", "int4", "int4",
                        "int4", "timestamptz"])
        now = __import__("datetime").datetime.now(__import__("datetime").timezone.utc)
        for i, key in enumerate(keys):
            sha = hashlib.sha256(key.encode()).hexdigest()
            copy.write_row((key, f"file:///archive/{key}.mp4", "ready", sha, 40_000_000 + i, "h264", VIDEO_FPS,
                            int(VIDEO_S * VIDEO_FPS), VIDEO_S, 1920, 1080, 0, now))


def copy_faces(conn, keys: list[str], rows: dict, report_every: int = 250_000) -> int:
    f = rows["faces"]
    cols = [f["video"].tolist(), f["detection_id"].tolist(), f["frame_index"].tolist(), f["timestamp_s"].tolist(),
            f["box"].tolist(), f["detector_score"].tolist(), f["face_px"].tolist(), f["blur"].tolist(),
            f["yaw"].tolist(), f["pitch"].tolist(), f["roll"].tolist(), f["sequence_number"].tolist(),
            f["quality_weight"].tolist()]
    vectors = rows["vectors"]
    n = 0
    with conn.cursor().copy(f"COPY faces ({', '.join(FACE_COPY_COLUMNS)}) FROM STDIN WITH (FORMAT BINARY)") as copy:
        copy.set_types(FACE_COPY_TYPES)
        for i, (v, det, fi, ts, box, score, px, blur, yaw, pitch, roll, sid, q) in enumerate(zip(*cols)):
            copy.write_row((keys[v], det, fi, ts, box, score, px, blur, yaw, pitch, roll, MODEL, vectors[i], sid, q))
            n += 1
            if report_every and n % report_every == 0:
                log(f"  faces copied: {n:,}")
    return n


def copy_sequences(conn, keys: list[str], rows: dict) -> int:
    s = rows["sequences"]
    names = ("sequence_number", "shot", "start_frame", "end_frame", "start_s", "end_s", "face_count", "mean_face_px",
             "mean_blur", "mean_abs_yaw", "mean_quality", "best_detection_id")
    cols = [s[k].tolist() for k in names]
    video = s["video"].tolist()
    n = 0
    with conn.cursor().copy(f"COPY sequences ({', '.join(SEQ_COPY_COLUMNS)}) FROM STDIN WITH (FORMAT BINARY)") as copy:
        copy.set_types(SEQ_COPY_TYPES)
        for i, values in enumerate(zip(*cols)):
            copy.write_row((keys[video[i]], MODEL, *values, rows["templates"][i]))
            n += 1
    return n


def hnsw_ddl(table: str, dim: int, extra_predicate: str = "", name: str | None = None) -> str:
    """The same index `Store.ensure_model` creates (optionally on a subset, under another name)."""
    column = "embedding" if table == "faces" else "template"
    name = name or hnsw_index_name(MODEL, table)
    return (f"CREATE INDEX {name} ON {table} USING hnsw (({column}::vector({int(dim)})) vector_cosine_ops)"
            f" WHERE model = '{MODEL}'{extra_predicate}")


class ProgressWatch(threading.Thread):
    """Polls pg_stat_progress_create_index; cancels the build when the projection overruns."""

    def __init__(self, url: str, target_pid: int, total_rows: int, budget_s: float | None):
        super().__init__(daemon=True)
        self.url, self.pid, self.total, self.budget = url, target_pid, total_rows, budget_s
        self.samples: list[dict] = []
        self.cancelled_reason: str | None = None
        self.stop_event = threading.Event()
        self.t0 = time.perf_counter()

    def run(self):
        with psycopg.connect(self.url, autocommit=True) as conn:
            last_log = 0.0
            while not self.stop_event.wait(3.0):
                row = conn.execute(
                    "SELECT phase, blocks_total, blocks_done, tuples_total, tuples_done FROM pg_stat_progress_create_index"
                    " WHERE pid = %s", (self.pid,)).fetchone()
                if row is None:
                    continue
                elapsed = time.perf_counter() - self.t0
                phase, bt, bd, tt, td = row
                frac = (bd / bt) if bt else ((td / (tt or self.total)) if td else 0.0)
                sample = {"t": round(elapsed, 1), "phase": phase, "blocks": [bd, bt], "tuples": [td, tt],
                          "fraction": round(frac, 4)}
                self.samples.append(sample)
                if elapsed - last_log >= 30:
                    last_log = elapsed
                    log(f"  build progress {elapsed:.0f}s: {phase} {frac:.1%}")
                # insertions get slower as the graph grows (log n): pad the linear projection
                if self.budget and elapsed > 60 and frac > 0.03:
                    projected = elapsed / frac * 1.15
                    if projected > self.budget:
                        self.cancelled_reason = (f"projected {projected:.0f} s at {frac:.1%} after {elapsed:.0f} s,"
                                                 f" over the {self.budget:.0f} s budget")
                        log(f"  cancelling: {self.cancelled_reason}")
                        conn.execute("SELECT pg_cancel_backend(%s)", (self.pid,))
                        return


def build_index(url: str, ddl: str, settings: dict, total_rows: int, budget_s: float | None = None) -> dict:
    with psycopg.connect(url, autocommit=True) as conn:
        for k, v in settings.items():
            conn.execute(f"SET {k} = '{v}'")
        pid = conn.execute("SELECT pg_backend_pid()").fetchone()[0]
        watch = ProgressWatch(url, pid, total_rows, budget_s)
        watch.start()
        t0 = time.perf_counter()
        ok, error = True, None
        try:
            conn.execute(ddl)
        except psycopg.errors.QueryCanceled as exc:
            ok, error = False, str(exc).strip()
        wall = time.perf_counter() - t0
        watch.stop_event.set()
        watch.join()
    return {"ok": ok, "seconds": round(wall, 2), "rows": total_rows, "rows_per_s": round(total_rows / wall, 1),
            "error": error, "cancelled_reason": watch.cancelled_reason, "progress": watch.samples[-40:],
            "ddl": ddl, "settings": settings, "loadavg_after": loadavg()}


class TimedStore(Store):
    """The Store with the wall time of each call `match_partition` makes, summed per method."""

    def __init__(self, url: str):
        super().__init__(url)
        self.times: dict[str, float] = {}
        self.calls: dict[str, int] = {}

    def _timed(name):  # noqa: N805
        def wrap(self, *a, **kw):
            t0 = time.perf_counter()
            try:
                return getattr(Store, name)(self, *a, **kw)
            finally:
                self.times[name] = self.times.get(name, 0.0) + time.perf_counter() - t0
                self.calls[name] = self.calls.get(name, 0) + 1
        return wrap

    sequences_for = _timed("sequences_for")
    nearest_sequences = _timed("nearest_sequences")
    sequence_faces = _timed("sequence_faces")
    upsert_matches = _timed("upsert_matches")
    del _timed


def knn_exact(base: np.ndarray, queries: np.ndarray, k: int = 10, chunk: int = 200_000) -> np.ndarray:
    """Exact top-k by cosine (rows are unit length): indexes into `base`."""
    best_s = np.full((len(queries), 0), -np.inf, np.float32)
    best_i = np.zeros((len(queries), 0), np.int64)
    for a in range(0, len(base), chunk):
        sims = queries @ base[a:a + chunk].T
        top = np.argpartition(-sims, min(k, sims.shape[1] - 1), axis=1)[:, :k]
        best_s = np.concatenate([best_s, np.take_along_axis(sims, top, 1)], 1)
        best_i = np.concatenate([best_i, top + a], 1)
        keep = np.argsort(-best_s, axis=1)[:, :k]
        best_s, best_i = np.take_along_axis(best_s, keep, 1), np.take_along_axis(best_i, keep, 1)
    return best_i


def hnsw_topk(url: str, table: str, dim: int, queries: np.ndarray, ef: int | None, k: int = 10,
              extra_where: str = "", exact: bool = False) -> tuple[list[list[int]], list[float]]:
    column = "embedding" if table == "faces" else "template"
    sql = (f"SELECT id FROM {table} WHERE model = %s{extra_where}"
           f" ORDER BY {column}::vector({int(dim)}) <=> %s LIMIT {int(k)}")
    out, times = [], []
    with connect(url, autocommit=True) as conn:
        if ef:
            conn.execute(f"SET hnsw.ef_search = {int(ef)}")
        if exact:
            conn.execute("SET enable_indexscan = off")
        conn.execute(sql, (MODEL, queries[0])).fetchall()  # warm the connection / plan
        for q in queries:
            t0 = time.perf_counter()
            ids = [r[0] for r in conn.execute(sql, (MODEL, q)).fetchall()]
            times.append((time.perf_counter() - t0) * 1000)
            out.append(ids)
    return out, times


def explain(url: str, table: str, dim: int, q: np.ndarray, extra_where: str = "") -> str:
    column = "embedding" if table == "faces" else "template"
    with connect(url, autocommit=True) as conn:
        rows = conn.execute(f"EXPLAIN SELECT id FROM {table} WHERE model = %s{extra_where}"
                            f" ORDER BY {column}::vector({int(dim)}) <=> %s LIMIT 10", (MODEL, q)).fetchall()
    import re
    return " | ".join(re.sub(r"'\[[^']*\]'", "'[...]'", r[0].strip()) for r in rows[:3])


def recall(found: list[list[int]], truth: list[list[int]]) -> float:
    return float(np.mean([len(set(f) & set(t)) / len(t) for f, t in zip(found, truth)]))


# --------------------------------------------------------------------------- the run


def main(argv=None) -> int:
    args = parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    dim = args.dim
    n_videos = max(1, args.sequences // SEQUENCES_PER_VIDEO)
    people = args.people or max(20, args.sequences // 5)
    mean_faces = args.faces / (n_videos * SEQUENCES_PER_VIDEO)
    efs = [int(x) for x in args.ef_search.split(",") if x]
    result: dict = {"args": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
                    "machine": machine_facts("numpy", "psycopg")}
    log(f"machine: {result['machine']['cpu']}, {result['machine']['cores_usable']} cores, "
        f"{result['machine']['memory_gb']} GB, load {result['machine']['loadavg_start']}")
    t_run = time.perf_counter()

    # 1. generate -------------------------------------------------------------------
    t0 = time.perf_counter()
    rng = np.random.default_rng(args.seed)
    gen = Generator(rng, dim, people)
    lay = layout_videos(gen, n_videos, 1, args.seed, mean_faces)
    rows = build_rows(gen, lay, gen.centres)
    gen_s = time.perf_counter() - t0
    n_faces, n_seqs = len(rows["vectors"]), len(rows["templates"])
    appear = np.bincount(lay["seq_person"], minlength=people)
    result["workload"] = {
        "videos": n_videos, "sequences": n_seqs, "faces": n_faces, "people": people,
        "people_in_archive": int((appear > 0).sum()), "dim": dim,
        "faces_per_sequence": {"mean": round(n_faces / n_seqs, 2), "min": int(lay["counts"].min()),
                               "max": int(lay["counts"].max())},
        "sequences_per_person_in_archive": {"mean": round(float(appear[appear > 0].mean()), 2),
                                            "p95": pct(appear[appear > 0], 95), "max": int(appear.max())},
        "generate_s": round(gen_s, 2),
        "synthetic_stats": synthetic_stats(Generator(np.random.default_rng(args.seed + 1), dim, 3000),
                                           np.random.default_rng(0)),
    }
    log(f"generated {n_videos:,} videos, {n_seqs:,} sequences, {n_faces:,} faces, {people:,} people in {gen_s:.1f} s")
    log(f"  synthetic: {json.dumps(result['workload']['synthetic_stats'])}")

    tmp = Path(tempfile.mkdtemp(prefix="reid-scale-", dir="/tmp"))
    server = None
    try:
        t0 = time.perf_counter()
        server = embedded_server(tmp / "pgdata")
        url = server.get_uri()
        store = Store(url)
        store.migrate(Settings().sql_dir)
        store.ensure_model(MODEL, BACKEND, dim)
        start_s = time.perf_counter() - t0
        with connect(url, autocommit=True) as conn:
            pg = {r[0]: r[1] for r in conn.execute(
                "SELECT name, setting || coalesce(unit, '') FROM pg_settings WHERE name IN ('shared_buffers',"
                " 'work_mem', 'maintenance_work_mem', 'max_parallel_maintenance_workers', 'max_worker_processes',"
                " 'effective_cache_size', 'dynamic_shared_memory_type')")}
            pg["server_version"] = conn.execute("SHOW server_version").fetchone()[0]
            pg["pgvector"] = conn.execute("SELECT extversion FROM pg_extension WHERE extname = 'vector'").fetchone()[0]
            # a bulk load: the per-model HNSW indexes are built afterwards, timed apart
            for table in ("faces", "sequences"):
                conn.execute(f"DROP INDEX {hnsw_index_name(MODEL, table)}")
        result["postgres"] = {**pg, "start_and_migrate_s": round(start_s, 2)}
        log(f"embedded Postgres {pg['server_version']}, pgvector {pg['pgvector']} up in {start_s:.1f} s; {pg}")

        # 2. load ------------------------------------------------------------------------
        load = {}
        with connect(url) as conn:
            t0 = time.perf_counter()
            with conn.transaction():
                copy_videos(conn, lay["keys"], 1)
            load["videos"] = {"rows": n_videos, "seconds": round(time.perf_counter() - t0, 2)}
            t0 = time.perf_counter()
            with conn.transaction():
                copy_faces(conn, lay["keys"], rows)
            s = time.perf_counter() - t0
            load["faces"] = {"rows": n_faces, "seconds": round(s, 2), "rows_per_s": round(n_faces / s)}
            log(f"faces: {n_faces:,} rows by binary COPY in {s:.1f} s ({n_faces / s:,.0f} rows/s)")
            t0 = time.perf_counter()
            with conn.transaction():
                copy_sequences(conn, lay["keys"], rows)
            s = time.perf_counter() - t0
            load["sequences"] = {"rows": n_seqs, "seconds": round(s, 2), "rows_per_s": round(n_seqs / s)}
            log(f"sequences: {n_seqs:,} rows in {s:.1f} s ({n_seqs / s:,.0f} rows/s)")
        with connect(url, autocommit=True) as conn:
            t0 = time.perf_counter()
            conn.execute("VACUUM ANALYZE videos, faces, sequences")
            load["vacuum_analyze_s"] = round(time.perf_counter() - t0, 2)
            face_ids = np.asarray([r[0] for r in conn.execute(
                "SELECT id FROM faces ORDER BY partition_key, detection_id")], np.int64)
            seq_ids = np.asarray([r[0] for r in conn.execute(
                "SELECT id FROM sequences ORDER BY partition_key, sequence_number")], np.int64)
        assert len(face_ids) == n_faces and len(seq_ids) == n_seqs
        # generation order is partition_key, then detection / sequence order: row i <-> id
        result["load"] = load
        log(f"vacuum analyze {load['vacuum_analyze_s']} s")

        # 2b. HNSW builds ------------------------------------------------------------------
        build_settings = {"maintenance_work_mem": args.maintenance_work_mem,
                          "max_parallel_maintenance_workers": args.parallel_workers}
        builds = {}
        log(f"building sequences HNSW ({n_seqs:,} rows) with {build_settings}")
        builds["sequences"] = build_index(url, hnsw_ddl("sequences", dim), build_settings, n_seqs)
        log(f"  sequences HNSW: {builds['sequences']['seconds']} s")
        face_where = ""  # what recall queries on faces must add to use the index built
        face_index_rows = n_faces
        if args.faces_index in ("auto", "full"):
            budget = args.faces_index_budget if args.faces_index == "auto" else None
            log(f"building faces HNSW ({n_faces:,} rows), budget {budget} s")
            builds["faces_full"] = b = build_index(url, hnsw_ddl("faces", dim), build_settings, n_faces, budget)
            log(f"  faces HNSW: ok={b['ok']} {b['seconds']} s {b['cancelled_reason'] or ''}")
        if args.faces_index == "subset" or (args.faces_index == "auto" and not builds["faces_full"]["ok"]):
            sub = min(args.faces_subset, n_faces)
            max_id = int(np.sort(face_ids)[sub - 1])
            face_where, face_index_rows = f" AND id <= {max_id}", sub
            name = hnsw_index_name(MODEL, "faces") + "_sub"
            log(f"building faces HNSW on a subset ({sub:,} rows, id <= {max_id})")
            builds["faces_subset"] = b = build_index(url, hnsw_ddl("faces", dim, face_where, name), build_settings, sub)
            log(f"  faces subset HNSW: {b['seconds']} s")
            # HNSW build cost grows about n log n: extrapolate, clearly labelled
            b["extrapolated_full_s"] = round(b["seconds"] * (n_faces / sub) * (math.log(n_faces) / math.log(sub)), 1)
            b["extrapolated_linear_s"] = round(b["seconds"] * n_faces / sub, 1)
        if args.faces_index == "skip":
            face_index_rows = 0
        result["hnsw_build"] = builds

        # 3. a new video, then matching -----------------------------------------------------
        in_archive = np.flatnonzero(appear > 0)
        p_arch = gen.popularity[in_archive] / gen.popularity[in_archive].sum()
        new_people = 4
        new_centres = gen.new_centres(new_people)
        all_centres = np.concatenate([gen.centres, new_centres])
        lay_new = layout_videos(gen, 1, n_videos + 1, args.seed, mean_faces,
                                people_pool=in_archive, people_p=p_arch)
        # replace some of the cast by people never seen before
        cast = np.unique(lay_new["seq_person"])
        swap = dict(zip(rng.choice(cast, new_people, replace=False).tolist(), range(people, people + new_people)))
        lay_new["seq_person"] = np.asarray([swap.get(int(x), int(x)) for x in lay_new["seq_person"]], np.int64)
        new_rows = build_rows(gen, lay_new, all_centres)
        key = lay_new["keys"][0]
        f, s = new_rows["faces"], new_rows["sequences"]
        face_rows = list(zip(f["detection_id"].tolist(), f["frame_index"].tolist(), f["timestamp_s"].tolist(),
                             f["box"].tolist(), f["detector_score"].tolist(), f["face_px"].tolist(), f["blur"].tolist(),
                             f["yaw"].tolist(), f["pitch"].tolist(), f["roll"].tolist()))
        seq_df = pl.DataFrame({k: s[k] for k in ("sequence_number", "shot", "start_frame", "end_frame", "start_s", "end_s",
                                                 "face_count", "mean_face_px", "mean_blur", "mean_abs_yaw",
                                                 "mean_quality", "best_detection_id")})
        faces_df = pl.DataFrame({"detection_id": f["detection_id"], "sequence_number": f["sequence_number"],
                                 "reject_reason": pl.Series([None] * len(f["detection_id"]), dtype=pl.String),
                                 "quality_weight": f["quality_weight"]})
        ingest = {}
        t0 = time.perf_counter()
        store.register_video(key, f"file:///archive/{key}.mp4")
        ingest["register_video_ms"] = round((time.perf_counter() - t0) * 1000, 1)
        t0 = time.perf_counter()
        store.replace_faces(key, MODEL, face_rows, new_rows["vectors"])
        ingest["replace_faces_ms"] = round((time.perf_counter() - t0) * 1000, 1)
        t0 = time.perf_counter()
        store.replace_sequences(key, MODEL, seq_df, new_rows["templates"], faces_df)
        ingest["replace_sequences_ms"] = round((time.perf_counter() - t0) * 1000, 1)
        ingest.update(faces=len(face_rows), sequences=seq_df.height, partition_key=key,
                      archive_people=int(len(cast) - new_people), new_people=new_people)
        log(f"new video {key}: {ingest}")

        settings = MatchSettings(method="robust_hausdorff", threshold=0.9, candidates=20, min_faces=3)
        runs = []
        last = None
        for r in range(args.match_runs):
            ts = TimedStore(url)
            report = match_partition(ts, key, MODEL, dim, settings)
            runs.append({"seconds": report.seconds, "queried": report.queried, "candidates": report.candidates,
                         "links": len(report.links), "store_s": dict(ts.times), "calls": dict(ts.calls)})
            last = report
            log(f"  match_partition run {r + 1}: {report.seconds * 1000:.0f} ms, {report.queried} sequences, "
                f"{report.candidates} pairs, {len(report.links)} links; {({k: round(v * 1000) for k, v in ts.times.items()})}")
        warm = runs[1:] or runs
        per_seq = [r["seconds"] * 1000 / max(1, r["queried"]) for r in warm]
        total = [r["seconds"] * 1000 for r in warm]
        split = {k: round(statistics.median(r["store_s"].get(k, 0) * 1000 for r in warm), 1)
                 for k in ("sequences_for", "nearest_sequences", "sequence_faces", "upsert_matches")}
        split["scoring_and_rest"] = round(statistics.median(
            r["seconds"] * 1000 - sum(r["store_s"].values()) * 1000 for r in warm), 1)

        # did matching find the archive's sequences of the same people? (ground truth)
        id_to_row = {int(i): n for n, i in enumerate(seq_ids)}
        new_seq_rows = {r["sequence_number"]: r for r in store.sequences_for(key, MODEL)}
        number_of_new = {r["id"]: sid for sid, r in new_seq_rows.items()}
        archive_person = lay["seq_person"]
        found_true, found_false, within_true, within_false, expected_capped, expected_all = 0, 0, 0, 0, 0, 0
        for link in last.links:
            a, b = link["sequence_a"], link["sequence_b"]
            new_side = a if a in number_of_new else b
            other = b if new_side == a else a
            p_new = lay_new["seq_person"][number_of_new[new_side]]
            if other in number_of_new:  # two sequences of the new video
                same = lay_new["seq_person"][number_of_new[other]] == p_new
                within_true += bool(same)
                within_false += not bool(same)
                continue
            same = archive_person[id_to_row[other]] == p_new
            found_true += bool(same)
            found_false += not bool(same)
        counts_ok = lay["counts"] >= settings.min_faces
        for sid, p_new in enumerate(lay_new["seq_person"].tolist()):
            if lay_new["counts"][sid] < settings.min_faces:
                continue
            n_true = int(((archive_person == p_new) & counts_ok).sum())
            expected_all += n_true
            expected_capped += min(n_true, settings.candidates)
        quality = {"archive_links_same_person": found_true, "archive_links_different_people": found_false,
                   "in_video_links_same_person": within_true, "in_video_links_different_people": within_false,
                   "archive_pairs_same_person": expected_all,
                   "archive_pairs_same_person_within_candidates": expected_capped}

        # nearest_sequences alone
        nearest_ms = []
        templates_new = new_rows["templates"]
        for _ in range(args.nearest_rounds):
            for t in templates_new:
                t0 = time.perf_counter()
                store.nearest_sequences(MODEL, dim, t, settings.candidates + 1, settings.min_faces)
                nearest_ms.append((time.perf_counter() - t0) * 1000)
        with connect(url, autocommit=True) as conn:  # the same search on one open connection
            sql = (f"SELECT id FROM sequences WHERE model = %s AND face_count >= %s"
                   f" ORDER BY template::vector({dim}) <=> %s LIMIT %s")
            conn.execute("SET hnsw.ef_search = 42")
            conn.execute(sql, (MODEL, 3, templates_new[0], 21)).fetchall()
            open_ms = []
            for _ in range(args.nearest_rounds):
                for t in templates_new:
                    t0 = time.perf_counter()
                    conn.execute(sql, (MODEL, 3, t, 21)).fetchall()
                    open_ms.append((time.perf_counter() - t0) * 1000)
        result["matching"] = {
            "settings": vars(settings) if hasattr(settings, "__dict__") else str(settings),
            "new_video": ingest,
            "runs": runs,
            "first_run_ms": round(runs[0]["seconds"] * 1000, 1),
            "total_ms": {"p50": round(pct(total, 50), 1), "p95": round(pct(total, 95), 1), "n": len(total)},
            "per_sequence_ms": {"p50": round(pct(per_seq, 50), 1), "p95": round(pct(per_seq, 95), 1)},
            "split_ms_median": split,
            "nearest_sequences_ms": {"p50": round(pct(nearest_ms, 50), 2), "p95": round(pct(nearest_ms, 95), 2),
                                     "n": len(nearest_ms)},
            "nearest_open_connection_ms": {"p50": round(pct(open_ms, 50), 2), "p95": round(pct(open_ms, 95), 2)},
            "ground_truth": quality,
        }
        log(f"match_partition: total p50 {pct(total, 50):.0f} ms, per sequence p50 {pct(per_seq, 50):.1f} "
            f"p95 {pct(per_seq, 95):.1f} ms; split {split}; nearest_sequences p50 {pct(nearest_ms, 50):.1f} "
            f"p95 {pct(nearest_ms, 95):.1f} ms; {quality}")

        # 4. recall@10 ----------------------------------------------------------------------
        rq = np.random.default_rng(args.seed + 7)
        gq = Generator(rq, dim, 1)
        gq.spec, gq.shared = gen.spec, gen.shared
        q_people = rq.choice(in_archive, args.recall_queries, p=p_arch)
        q_counts = np.full(args.recall_queries, 10)
        q_faces = gq.faces(gq.sequence_centres(gen.centres[q_people]), q_counts)
        q_templates = templates_of(q_faces, np.ones(len(q_faces), np.float32), q_counts)
        # exact truth over the archive's templates; the new video's 20 are in the table too
        base_t = np.concatenate([rows["templates"], templates_new])
        ids_t = np.concatenate([seq_ids, np.asarray([new_seq_rows[i]["id"] for i in sorted(new_seq_rows)])])
        truth_t = [[int(ids_t[j]) for j in row] for row in knn_exact(base_t, q_templates)]
        rec = {"sequences": {"queries": len(q_templates), "rows": len(base_t),
                             "plan": explain(url, "sequences", dim, q_templates[0])}}
        exact_pg, exact_ms = hnsw_topk(url, "sequences", dim, q_templates[:10], None, exact=True)
        rec["sequences"]["exact_postgres_agrees"] = recall(exact_pg, truth_t[:10])
        rec["sequences"]["exact_postgres_ms_p50"] = round(pct(exact_ms, 50), 1)
        for ef in efs:
            found, ms = hnsw_topk(url, "sequences", dim, q_templates, ef)
            rec["sequences"][f"ef{ef}"] = {"recall_at_10": round(recall(found, truth_t), 4),
                                          "ms_p50": round(pct(ms, 50), 2), "ms_p95": round(pct(ms, 95), 2)}
            log(f"  sequences recall@10 ef_search={ef}: {rec['sequences'][f'ef{ef}']}")
        if face_index_rows:
            nfq = args.face_recall_queries
            fq_people = rq.choice(in_archive, nfq, p=p_arch)
            fq = gq.faces(gq.sequence_centres(gen.centres[fq_people]), np.ones(nfq, np.int64))
            base_f = rows["vectors"]
            fids = face_ids
            if face_where:  # the subset the index covers (new video's faces have larger ids)
                keep = face_ids <= int(face_where.split("<=")[1])
                base_f, fids = base_f[keep], face_ids[keep]
            else:
                with connect(url) as conn:
                    new_faces = conn.execute(
                        "SELECT id, embedding FROM faces WHERE partition_key = %s ORDER BY detection_id", (key,)).fetchall()
                base_f = np.concatenate([base_f, np.asarray([np.asarray(r[1].to_numpy()) for r in new_faces], np.float32)])
                fids = np.concatenate([face_ids, np.asarray([r[0] for r in new_faces], np.int64)])
            t0 = time.perf_counter()
            truth_f = [[int(fids[j]) for j in row] for row in knn_exact(base_f, fq)]
            rec["faces"] = {"queries": nfq, "rows": len(base_f), "numpy_exact_ms_per_query": round(
                (time.perf_counter() - t0) * 1000 / nfq, 1), "plan": explain(url, "faces", dim, fq[0], face_where),
                "subset": bool(face_where)}
            exact_pg, exact_ms = hnsw_topk(url, "faces", dim, fq[:3], None, extra_where=face_where, exact=True)
            rec["faces"]["exact_postgres_agrees"] = recall(exact_pg, truth_f[:3])
            rec["faces"]["exact_postgres_ms_p50"] = round(pct(exact_ms, 50), 1)
            for ef in efs:
                found, ms = hnsw_topk(url, "faces", dim, fq, ef, extra_where=face_where)
                rec["faces"][f"ef{ef}"] = {"recall_at_10": round(recall(found, truth_f), 4),
                                          "ms_p50": round(pct(ms, 50), 2), "ms_p95": round(pct(ms, 95), 2)}
                log(f"  faces recall@10 ef_search={ef}: {rec['faces'][f'ef{ef}']}")
        result["recall"] = rec

        # 5. sizes --------------------------------------------------------------------------
        with connect(url, autocommit=True) as conn:
            sizes = {}
            for table in ("videos", "faces", "sequences"):
                sizes[table] = {
                    "rows": conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0],
                    "heap_mb": round(conn.execute("SELECT pg_relation_size(%s)", (table,)).fetchone()[0] / 2**20, 1),
                    "total_mb": round(conn.execute("SELECT pg_total_relation_size(%s)", (table,)).fetchone()[0] / 2**20, 1),
                    "indexes_mb": {r[0]: round(r[1] / 2**20, 1) for r in conn.execute(
                        "SELECT indexrelid::regclass::text, pg_relation_size(indexrelid) FROM pg_index"
                        " WHERE indrelid = %s::regclass ORDER BY 1", (table,))},
                }
            sizes["database_mb"] = round(conn.execute("SELECT pg_database_size(current_database())").fetchone()[0] / 2**20, 1)
        result["sizes"] = sizes
        log(f"sizes: {json.dumps(sizes)}")
    finally:
        if server is not None and not args.keep:
            server.stop()
        if not args.keep:
            shutil.rmtree(tmp, ignore_errors=True)
    result["machine"]["loadavg_end"] = loadavg()
    result["run_s"] = round(time.perf_counter() - t_run, 1)
    (args.out / "scale.json").write_text(json.dumps(result, indent=2, default=str))
    (args.out / "scale.md").write_text(markdown(result))
    print(markdown(result))
    return 0


def markdown(r: dict) -> str:
    w, m, ld, b = r["workload"], r["machine"], r["load"], r["hnsw_build"]
    mt, rec, sz = r["matching"], r["recall"], r["sizes"]
    lines = [
        "# Scale benchmark",
        "",
        f"Machine: {m['cpu']}, {m['cores_usable']} cores, {m['memory_gb']} GB; load average {m['loadavg_start']} "
        f"at the start, {m.get('loadavg_end')} at the end. Postgres {r['postgres']['server_version']} "
        f"(embedded), pgvector {r['postgres']['pgvector']}, shared_buffers {r['postgres'].get('shared_buffers')}.",
        "",
        f"Workload: {w['videos']:,} videos, {w['sequences']:,} sequences, {w['faces']:,} faces, {w['people']:,} "
        f"people ({w['people_in_archive']:,} seen), dim {w['dim']}; faces per sequence mean "
        f"{w['faces_per_sequence']['mean']}; sequences per person mean {w['sequences_per_person_in_archive']['mean']}, "
        f"max {w['sequences_per_person_in_archive']['max']}.",
        "",
        "| step | rows | seconds | rows/s | notes |",
        "|---|---:|---:|---:|---|",
        f"| COPY faces (binary) | {ld['faces']['rows']:,} | {ld['faces']['seconds']} | {ld['faces']['rows_per_s']:,} | btree indexes in place, HNSW dropped |",
        f"| COPY sequences (binary) | {ld['sequences']['rows']:,} | {ld['sequences']['seconds']} | {ld['sequences']['rows_per_s']:,} | |",
        f"| VACUUM ANALYZE | | {ld['vacuum_analyze_s']} | | |",
        f"| HNSW sequences | {b['sequences']['rows']:,} | {b['sequences']['seconds']} | {b['sequences']['rows_per_s']:,} | {b['sequences']['settings']} |",
    ]
    if "faces_full" in b:
        f = b["faces_full"]
        lines.append(f"| HNSW faces (all) | {f['rows']:,} | {f['seconds']} | {f['rows_per_s']:,} | "
                     f"{'built' if f['ok'] else 'cancelled: ' + str(f['cancelled_reason'])} |")
    if "faces_subset" in b:
        f = b["faces_subset"]
        lines.append(f"| HNSW faces (subset) | {f['rows']:,} | {f['seconds']} | {f['rows_per_s']:,} | "
                     f"extrapolated to all: {f['extrapolated_full_s']} s (n log n), {f['extrapolated_linear_s']} s (linear) |")
    lines += [
        "",
        f"New video: {mt['new_video']['sequences']} sequences ({mt['new_video']['archive_people']} archive people, "
        f"{mt['new_video']['new_people']} new), {mt['new_video']['faces']} faces; replace_faces "
        f"{mt['new_video']['replace_faces_ms']} ms, replace_sequences {mt['new_video']['replace_sequences_ms']} ms.",
        "",
        "| matching | p50 ms | p95 ms | notes |",
        "|---|---:|---:|---|",
        f"| match_partition, whole video | {mt['total_ms']['p50']} | {mt['total_ms']['p95']} | {mt['total_ms']['n']} warm runs; first run {mt['first_run_ms']} ms |",
        f"| match_partition, per sequence | {mt['per_sequence_ms']['p50']} | {mt['per_sequence_ms']['p95']} | split (median ms): {mt['split_ms_median']} |",
        f"| Store.nearest_sequences (21 nearest) | {mt['nearest_sequences_ms']['p50']} | {mt['nearest_sequences_ms']['p95']} | new connection per call, {mt['nearest_sequences_ms']['n']} calls |",
        f"| same query, open connection | {mt['nearest_open_connection_ms']['p50']} | {mt['nearest_open_connection_ms']['p95']} | |",
        "",
        f"Matching against ground truth (last run): {mt['ground_truth']}",
        "",
        "| recall@10 | rows | queries | ef_search | recall | p50 ms | p95 ms |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for kind in ("sequences", "faces"):
        if kind not in rec:
            continue
        for key, v in rec[kind].items():
            if key.startswith("ef"):
                lines.append(f"| {kind}{' (subset)' if rec[kind].get('subset') else ''} | {rec[kind]['rows']:,} | "
                             f"{rec[kind]['queries']} | {key[2:]} | {v['recall_at_10']:.4f} | {v['ms_p50']} | {v['ms_p95']} |")
        lines.append(f"| {kind}: exact in Postgres (index scans off) | {rec[kind]['rows']:,} | | | agrees with numpy "
                     f"{rec[kind]['exact_postgres_agrees']:.3f} | {rec[kind]['exact_postgres_ms_p50']} | |")
    lines += ["", "| table | rows | heap MB | total MB | indexes MB |", "|---|---:|---:|---:|---|"]
    for t in ("videos", "faces", "sequences"):
        lines.append(f"| {t} | {sz[t]['rows']:,} | {sz[t]['heap_mb']} | {sz[t]['total_mb']} | {sz[t]['indexes_mb']} |")
    lines += ["", f"Database {sz['database_mb']} MB; whole run {r['run_s']} s.", ""]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
