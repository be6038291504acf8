-- Face sequences (per-person tracks within a video) and each face's membership.
CREATE TABLE sequences (
    id                bigserial PRIMARY KEY,
    partition_key     text NOT NULL REFERENCES videos (partition_key) ON DELETE CASCADE,
    model             text NOT NULL REFERENCES face_models (model),
    sequence_id       integer NOT NULL,  -- per video and model, from 0
    shot              integer NOT NULL,
    start_frame       integer NOT NULL,
    end_frame         integer NOT NULL,
    start_s           double precision NOT NULL,
    end_s             double precision NOT NULL,
    face_count        integer NOT NULL,
    mean_face_px      real,
    mean_blur         real,
    mean_abs_yaw      real,
    mean_quality      real,
    best_detection_id integer,
    template          vector NOT NULL,  -- quality-weighted mean of the unit embeddings, unit length
    UNIQUE (partition_key, model, sequence_id)
);
CREATE INDEX sequences_partition_idx ON sequences (partition_key);

ALTER TABLE faces
    ADD COLUMN sequence_id    integer,  -- NULL: rejected by the quality gate
    ADD COLUMN reject_reason  text,
    ADD COLUMN quality_weight real;
