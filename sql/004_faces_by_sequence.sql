-- Matching loads the faces of candidate sequences: find them by sequence, not by scanning
-- the whole video's faces.
CREATE INDEX faces_sequence_idx ON faces (partition_key, model, sequence_id) WHERE sequence_id IS NOT NULL;
