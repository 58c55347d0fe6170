"""Tests for age_tf.parallel: results in order; spawned workers do not re-import the command."""

import os
import subprocess
import sys

from age_tf import parallel

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

MAIN = """
import os, sys
from age_tf import parallel
with open(os.environ["MARK"], "a") as f:  # a command's heavy imports would be here
    f.write("main imported\\n")
if __name__ == "__main__":
    print(parallel.map_in_processes(len, [[1, 2], [3], [4, 5, 6]], workers=2))
"""


def test_results_in_order_in_process_and_chunked():
    assert parallel.map_in_processes(len, [[1], [2, 3]], workers=1) == [1, 2]
    assert parallel.chunked(range(5), 2) == [[0, 1], [2, 3], [4]]


def test_spawned_workers_do_not_import_the_parents_main(tmp_path):
    script, mark = tmp_path / "command.py", tmp_path / "mark.txt"
    script.write_text(MAIN)
    env = {**os.environ, "MARK": str(mark), "PYTHONPATH": ROOT}
    r = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, env=env,
                       timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    assert r.stdout.strip() == "[2, 1, 3]"
    assert mark.read_text() == "main imported\n"  # once: the parent only
