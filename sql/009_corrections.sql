-- People's corrections of the identities, kept as constraints that every recomputation
-- obeys (never edits of its output). A correction names sightings by what survives
-- re-running a video: the partition key, the time span and one face of the sighting (its
-- time and box), never a sequence row id (re-sequencing a video makes new ones).
--   must_link:   every sighting of side_a and side_b is one person (a merge)
--   cannot_link: no sighting of side_a is the same person as one of side_b (split, not-same)
--   label:       the identity holding side_a is called `value` (kept locally, shown to people)
--   hide:        the identity holding side_a is hidden from the gallery
CREATE TABLE corrections (
    id         bigserial PRIMARY KEY,
    kind       text NOT NULL CHECK (kind IN ('must_link', 'cannot_link', 'label', 'hide')),
    side_a     jsonb NOT NULL,  -- [{partition_key, start_s, end_s, t, box}, ...]
    side_b     jsonb NOT NULL DEFAULT '[]',
    value      text,
    note       text NOT NULL DEFAULT '',  -- what the person did, in words
    source     text NOT NULL DEFAULT 'cli',  -- cli | gallery
    created_at timestamptz NOT NULL DEFAULT now()
);

-- How each correction fared at the last recomputation of a model's identities.
CREATE TABLE correction_status (
    correction bigint NOT NULL REFERENCES corrections (id) ON DELETE CASCADE,
    model      text NOT NULL REFERENCES face_models (model) ON DELETE CASCADE,
    status     text NOT NULL,  -- applied | partly_stale | stale | overridden
    detail     text NOT NULL,
    checked_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (correction, model)
);

ALTER TABLE identities
    ADD COLUMN label  text,
    ADD COLUMN hidden boolean NOT NULL DEFAULT false;
