-- Files the inbox sensor did not take, with the reason (not a video, hidden, partial, empty,
-- a symbolic link): shown by `reid status`, instead of only in one sensor tick's log.
CREATE TABLE inbox_skipped (
    location text PRIMARY KEY,  -- full path or s3:// URI
    reason   text NOT NULL,
    seen_at  timestamptz NOT NULL DEFAULT now()
);
