-- Scored links between sequences (anywhere in the archive) and the anonymous identities
-- recomputed from them. A pair is stored once, lower sequence id first.
CREATE TABLE matches (
    id                  bigserial PRIMARY KEY,
    model               text NOT NULL REFERENCES face_models (model),
    method              text NOT NULL,
    sequence_a          bigint NOT NULL REFERENCES sequences (id) ON DELETE CASCADE,
    sequence_b          bigint NOT NULL REFERENCES sequences (id) ON DELETE CASCADE,
    partition_a         text NOT NULL,
    partition_b         text NOT NULL,
    score               real NOT NULL,
    template_similarity real NOT NULL,
    linked              boolean NOT NULL,  -- score >= the model's threshold for the method
    scored_at           timestamptz NOT NULL DEFAULT now(),
    CHECK (sequence_a < sequence_b),
    UNIQUE (model, method, sequence_a, sequence_b)
);
CREATE INDEX matches_a_idx ON matches (sequence_a);
CREATE INDEX matches_b_idx ON matches (sequence_b);

CREATE TABLE identities (
    identity_id    text NOT NULL,
    model          text NOT NULL REFERENCES face_models (model),
    sequence_count integer NOT NULL,
    video_count    integer NOT NULL,
    face_count     integer NOT NULL,
    best_sequence  bigint REFERENCES sequences (id) ON DELETE SET NULL,
    computed_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (model, identity_id)
);

CREATE TABLE identity_sequences (
    model       text NOT NULL,
    identity_id text NOT NULL,
    sequence    bigint NOT NULL REFERENCES sequences (id) ON DELETE CASCADE,
    PRIMARY KEY (model, sequence),
    FOREIGN KEY (model, identity_id) REFERENCES identities (model, identity_id) ON DELETE CASCADE
);
