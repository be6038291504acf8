-- Videos, faces and their vectors. One row per registered file; faces carry the model
-- that embedded them, and vectors of different models are never compared.
CREATE EXTENSION IF NOT EXISTS vector;

CREATE TABLE videos (
    partition_key text PRIMARY KEY,
    source_uri    text NOT NULL,
    status        text NOT NULL DEFAULT 'registered',  -- registered | ready | duplicate | failed
    error         text,
    sha256        text,
    size_bytes    bigint,
    codec         text,
    fps           double precision,
    frame_count   integer,
    duration_s    double precision,
    width         integer,
    height        integer,
    rotation      integer,
    duplicate_of  text REFERENCES videos (partition_key) ON DELETE SET NULL,
    registered_at timestamptz NOT NULL DEFAULT now(),
    probed_at     timestamptz
);
CREATE INDEX videos_sha256_idx ON videos (sha256);

CREATE TABLE face_models (
    model      text PRIMARY KEY,
    backend    text NOT NULL,
    dim        integer NOT NULL,
    first_seen timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE faces (
    id             bigserial PRIMARY KEY,
    partition_key  text NOT NULL REFERENCES videos (partition_key) ON DELETE CASCADE,
    detection_id   integer NOT NULL,  -- row of the partition's frame_detections parquet
    frame_index    integer NOT NULL,
    timestamp_s    double precision NOT NULL,
    box            real[] NOT NULL,   -- x1, y1, x2, y2 in frame pixels
    detector_score real,
    face_px        real,
    blur           real,
    yaw            real,
    pitch          real,
    roll           real,
    model          text NOT NULL REFERENCES face_models (model),
    embedding      vector NOT NULL,
    UNIQUE (partition_key, model, detection_id)
);
CREATE INDEX faces_partition_idx ON faces (partition_key);
-- Each model gets its own partial HNSW (cosine) index over `embedding::vector(dim)`,
-- created by the store the first time the model is seen (see reid_pipeline/store.py).
