-- A person may choose the face shown on an identity's card: a `cover` correction, side_a
-- one sighting reference whose time and box are the chosen face's (not the sequence's best
-- face). The gallery finds that face again (corrections.covers); nothing is recomputed.
ALTER TABLE corrections DROP CONSTRAINT corrections_kind_check;
ALTER TABLE corrections ADD CONSTRAINT corrections_kind_check
    CHECK (kind IN ('must_link', 'cannot_link', 'label', 'hide', 'cover'));
