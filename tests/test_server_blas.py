"""``maxine serve`` keeps numpy's BLAS on one thread (maxine.server.one_blas_thread):
checked in a fresh interpreter, where the server's start reaches the point of serving."""

import json
import subprocess
import sys

CODE = """
import json, numpy
from threadpoolctl import threadpool_info
from maxine import server
from maxine.settings import Settings

def blas_threads():
    return [p["num_threads"] for p in threadpool_info() if p["user_api"] == "blas"]

before, serving = blas_threads(), []
server._run_granian = lambda app, settings: serving.extend(blas_threads())  # where it would serve
server.run(None, Settings())
print(json.dumps([before, serving]))
"""


def test_numpys_blas_runs_on_one_thread_when_the_server_serves():
    out = subprocess.run([sys.executable, "-c", CODE], capture_output=True, text=True, timeout=60, check=True)
    before, serving = json.loads(out.stdout.splitlines()[-1])
    assert before, "numpy loaded no BLAS that threadpoolctl knows"
    assert serving == [1] * len(before)
