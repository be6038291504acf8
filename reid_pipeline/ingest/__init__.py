"""Ingest: a video from where it lies to a registered partition, before any face is seen.

- `arrivals`: what counts as a new video (its partition key, names never taken, the settle rule);
- `inbox` (a watched folder, and `scan_source` for either kind) and `buckets` (a watched
  S3-compatible bucket) find new videos; `sources`: where a registered video's bytes are
  (file or s3 URI) and the local copy to read them from;
- `video`: probing, checking and decoding a video (PyAV, OpenCV); `shots`: shot cuts;
- `catalog`: registering a whole archive, unknown keys, the status snapshot.

May import: the top modules (`config`, `database`, `storage`) and `store`.
"""
