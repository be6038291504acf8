"""An S3-compatible endpoint for the compose `s3` profile: the moto server, with the buckets
named in `REID_S3_BUCKETS` (space-separated) made at start. A stand-in for MinIO, Ceph or AWS
on one machine, to run the deployment whose run containers share no volume: its objects live
in memory and are gone when the container stops.

    python s3-server.py [--port 5000]      # healthy once /tmp/s3-ready exists
"""

import argparse
import os
import signal
import threading
from pathlib import Path

import boto3
from moto.server import ThreadedMotoServer

parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
parser.add_argument("--port", type=int, default=5000)
args = parser.parse_args()

ready = Path("/tmp/s3-ready")
ready.unlink(missing_ok=True)
server = ThreadedMotoServer(ip_address="0.0.0.0", port=args.port, verbose=True)
server.start()
# moto takes any credentials; these are only for making the buckets here
client = boto3.client("s3", endpoint_url=f"http://127.0.0.1:{args.port}", region_name="us-east-1",
                      aws_access_key_id="moto", aws_secret_access_key="moto")
for bucket in os.environ.get("REID_S3_BUCKETS", "").split():
    client.create_bucket(Bucket=bucket)
    print(f"bucket {bucket} made", flush=True)
ready.touch()

stop = threading.Event()
for sig in (signal.SIGTERM, signal.SIGINT):
    signal.signal(sig, lambda *_: stop.set())
stop.wait()
server.stop()
