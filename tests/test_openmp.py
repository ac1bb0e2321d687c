"""Releasing a thread's OpenMP workers, so that the model thread's workers keep spinning."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch

BUNDLED = Path(torch.__file__).parent / "lib" / "libgomp.so.1"

# In a fresh process: a parallel op on the main thread starts its worker pool; releasing
# it ends those workers; PyTorch still computes on the main thread and on another one.
SCRIPT = """
import os, time, threading
from concurrent.futures import ThreadPoolExecutor
import torch
from spanqa.runtime.device import release_openmp_workers

def threads():
    return len(os.listdir("/proc/self/task"))

def work():
    x = torch.arange(4_000_000, dtype=torch.float32)
    return float((x * 2).sum())

expected = work()
before = threads()
assert release_openmp_workers() is True
deadline = time.time() + 5
while threads() > before - (torch.get_num_threads() - 1) and time.time() < deadline:
    time.sleep(0.01)
print(before, threads(), torch.get_num_threads())
assert ThreadPoolExecutor(1).submit(work).result() == expected
assert work() == expected
"""


@pytest.mark.skipif(not sys.platform.startswith("linux") or not BUNDLED.exists()
                    or torch.get_num_threads() < 2,
                    reason="PyTorch's bundled libgomp on a machine with 2+ cores")
def test_releasing_the_loading_threads_openmp_workers_ends_them():
    out = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True,
                         cwd=Path(__file__).resolve().parents[1], timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    before, after, workers = map(int, out.stdout.split())
    assert after == before - (workers - 1)
