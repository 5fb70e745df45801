"""Running a benchmark module as the smoke tests do: its own process group, killed whole on a timeout."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def run_bench(module: str, argv: list[str], amqp_url: str, *, timeout: float = 180) -> tuple[int, str, str]:
    """``python -m <module> <argv>`` against ``amqp_url``; its exit code, stdout and stderr."""
    path = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p)
    env = {**os.environ, "RELAYBUS_BENCH_AMQP_URL": amqp_url, "PYTHONPATH": path}
    bench = subprocess.Popen(
        [sys.executable, "-m", module, *argv],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # on a timeout the bench and every process it started are killed together
    )
    try:
        stdout, stderr = bench.communicate(timeout=timeout)
    finally:
        if bench.poll() is None:
            os.killpg(bench.pid, signal.SIGKILL)
            bench.wait()
    return bench.returncode, stdout, stderr
