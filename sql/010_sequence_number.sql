-- "sequence id" named two things: a sequence's number within its video (sequences.sequence_id,
-- faces.sequence_id) and the row id that other tables reference (sequences.id). The number is
-- now `sequence_number`; a column called `sequence_id` always holds a sequences.id, as do the
-- pair columns matches.sequence_a / sequence_b and identities.best_sequence.
ALTER TABLE sequences RENAME COLUMN sequence_id TO sequence_number;
ALTER TABLE sequences RENAME CONSTRAINT sequences_partition_key_model_sequence_id_key
    TO sequences_partition_key_model_sequence_number_key;
ALTER TABLE faces RENAME COLUMN sequence_id TO sequence_number;
ALTER INDEX faces_sequence_idx RENAME TO faces_sequence_number_idx;
ALTER TABLE identity_sequences RENAME COLUMN sequence TO sequence_id;
ALTER TABLE unresolved_sequences RENAME COLUMN sequence TO sequence_id;
