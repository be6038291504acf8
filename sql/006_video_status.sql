-- A video is `processing` from its probe until its last per-video step (cross_video_matches)
-- has committed, then `ready`; a run that died leaves `processing` or `failed` with the reason.
-- `partial`: the frames ended well before the container's duration (a truncated file); the
-- faces of the decoded part are kept and matched.
COMMENT ON COLUMN videos.status IS 'registered | processing | ready | partial | duplicate | failed';
