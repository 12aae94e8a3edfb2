"""The server keeps numpy's BLAS on one thread (maxine.server.one_blas_thread)."""

import json
import subprocess
import sys

CODE = """
import json, numpy
from threadpoolctl import threadpool_info
before = [p["num_threads"] for p in threadpool_info() if p["user_api"] == "blas"]
from maxine.server import one_blas_thread
one_blas_thread()
after = [p["num_threads"] for p in threadpool_info() if p["user_api"] == "blas"]
print(json.dumps([before, after]))
"""


def test_numpys_blas_runs_on_one_thread_once_the_server_limits_it():
    out = subprocess.run([sys.executable, "-c", CODE], capture_output=True, text=True, timeout=60, check=True)
    before, after = json.loads(out.stdout)
    assert before, "numpy loaded no BLAS that threadpoolctl knows"
    assert after == [1] * len(before)
