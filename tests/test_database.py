"""The embedded Postgres as the processes that share it reach it."""

import subprocess
import sys
from urllib.parse import parse_qs, urlsplit

from reid_pipeline.config import PROJECT_ROOT

ATTACH_AT_ONCE = """
import sys, threading
from reid_pipeline.database import embedded_server
barrier, errors = threading.Barrier(8), []
def attach():
    barrier.wait()
    try:
        embedded_server(sys.argv[1]).get_uri()
    except Exception as exc:
        errors.append(repr(exc))
threads = [threading.Thread(target=attach) for _ in range(8)]
[t.start() for t in threads]
[t.join() for t in threads]
print(errors)
sys.exit(1 if errors else 0)
"""


def test_threads_of_a_new_process_attach_at_once(pg_url):
    """Dagster ticks sensors on threads: in a fresh code-server process two of them reached
    the running server at once and one failed inside pgserver's file lock."""
    pgdata = parse_qs(urlsplit(pg_url).query)["host"][0]
    done = subprocess.run([sys.executable, "-c", ATTACH_AT_ONCE, pgdata], cwd=PROJECT_ROOT, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
