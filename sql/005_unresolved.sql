-- Sequences too short to stand as a person of their own and not reliably linked to anyone:
-- listed, not passed off as a person seen once. Recomputed with the identities.
CREATE TABLE unresolved_sequences (
    model    text NOT NULL REFERENCES face_models (model),
    sequence bigint NOT NULL REFERENCES sequences (id) ON DELETE CASCADE,
    reason   text NOT NULL,
    PRIMARY KEY (model, sequence)
);
