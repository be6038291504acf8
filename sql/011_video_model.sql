-- The face model that made a video's vectors, recorded when they are stored (NULL: not
-- embedded yet). A video lives in exactly one model: storing its faces with a model removes
-- its rows of every other one (Store.replace_faces), and a video without faces still says
-- which model looked at it (so `reid reembed` finds it). Existing videos take the model of
-- their newest faces; those without faces stay NULL (the model that saw them is unknown).
ALTER TABLE videos ADD COLUMN model text;
UPDATE videos v SET model = newest.model
FROM (SELECT DISTINCT ON (partition_key) partition_key, model FROM faces ORDER BY partition_key, id DESC) AS newest
WHERE newest.partition_key = v.partition_key;
COMMENT ON COLUMN videos.model IS 'the face model of the video''s vectors (NULL: not embedded yet, or before 011)';
