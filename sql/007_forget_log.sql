-- What was forgotten and when: the kind (video or identity), its key, and counts. Never a
-- vector, a picture or a file name of a person's face.
CREATE TABLE forget_log (
    id        bigserial PRIMARY KEY,
    at        timestamptz NOT NULL DEFAULT now(),
    kind      text NOT NULL,
    target    text NOT NULL,
    counts    jsonb NOT NULL
);
