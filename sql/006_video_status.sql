-- A video is `processing` from its probe until its last per-video step (cross_video_matches)
-- has committed, then `ready`; a run that died leaves `processing` or `failed` with the reason.
COMMENT ON COLUMN videos.status IS 'registered | processing | ready | duplicate | failed';
