"""The compose deployment built, started, fed two clips, hurt and torn down, for real.

Runs `deploy/smoke.py` once per profile (each about 6 minutes with warm images, 10-15
cold, on 2 cores): `shared` (inbox and data root in volumes every run container mounts) and
`s3` (both in buckets of a moto server; run containers mount nothing). It needs root, Docker
(installed when missing) and a Debian mirror. Skipped unless asked for:

    REID_DOCKER_SMOKE=1 ./reid test tests/test_deploy_smoke.py [-k s3]
"""

import json
import os
import subprocess
import sys

import pytest

from reid_pipeline.config import PROJECT_ROOT

pytestmark = [
    pytest.mark.docker_smoke,
    pytest.mark.skipif(os.environ.get("REID_DOCKER_SMOKE") != "1", reason="set REID_DOCKER_SMOKE=1 to run the compose smoke run"),
]


@pytest.mark.timeout(3600)
@pytest.mark.parametrize("profile", ["shared", "s3"])
def test_the_compose_stack_processes_two_clips_survives_a_killed_run_container_and_leaves_nothing(tmp_path, profile):
    numbers = tmp_path / "smoke.json"
    result = subprocess.run(
        [sys.executable, str(PROJECT_ROOT / "deploy" / "smoke.py"), "--profile", profile,
         "--workdir", str(tmp_path / "work"), "--json", str(numbers)],
        cwd=PROJECT_ROOT, timeout=3500,
    )
    report = json.loads(numbers.read_text())
    assert result.returncode == 0 and report["ok"], report
    clean, fault = report["clean_counts"], report["fault_counts"]
    assert clean["videos"] == 2 and clean["faces"] > 0 and clean["sequences"] > 0 and clean["identities"] > 0
    for table in ("videos", "faces", "sequences", "identities", "faces_by_video", "sequences_by_video"):
        assert fault[table] == clean[table], table
    assert report["fault_killed_status"] == "FAILURE" and any(s == "SUCCESS" for _, s in report["fault_retries"])
    assert not any(report["leftovers"].values()), report["leftovers"]
    runs = report["mounts"]["run_containers"]
    assert len(runs) == 3 and report["clean_data_root"]["parquet"] >= 3 * clean["videos"]
    if profile == "s3":  # run containers share no volume; each downloaded its own video
        assert not any(runs.values()), runs
        assert len(report["run_container_caches"]) == 2 and all(report["run_container_caches"].values())
    else:
        assert all(any("reid_data" in m for m in mounts) for mounts in runs.values()), runs
