-- Identities keep their id across recomputation (reid_pipeline.identities.clustering.carry_ids): each
-- recomputation matches its clusters to the previous identities by the sightings they share.
-- The previous identities' sightings are kept here by what survives re-running a video (the
-- references of reid_pipeline.identities.corrections: partition key, time span, one face's time and box),
-- since re-running a video replaces its sequence rows (and their identity_sequences rows).
CREATE TABLE identity_sightings (
    model       text NOT NULL REFERENCES face_models (model) ON DELETE CASCADE,
    identity_id text NOT NULL,
    sequence_id bigint NOT NULL,  -- the row id when written; no foreign key: kept after it is re-made
    sighting    jsonb NOT NULL,   -- {partition_key, start_s, end_s, t, box}
    PRIMARY KEY (model, sequence_id)
);
CREATE INDEX identity_sightings_identity_idx ON identity_sightings (model, identity_id);

-- An id that ended (merged into another identity, split into several, its sightings
-- forgotten or left unresolved) points to what became of it. An id that comes back (the
-- same person again, e.g. a merge undone) loses its forward.
CREATE TABLE identity_forwards (
    model   text NOT NULL REFERENCES face_models (model) ON DELETE CASCADE,
    old_id  text NOT NULL,
    new_ids text[] NOT NULL DEFAULT '{}',  -- the identities holding its sightings, most first
    reason  text NOT NULL CHECK (reason IN ('merged', 'split', 'unresolved', 'forgotten')),
    at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (model, old_id)
);
