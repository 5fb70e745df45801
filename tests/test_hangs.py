"""A hanging test (or teardown) fails alone, after the timeout, with what each of its asyncio tasks awaits
(tests/hangs.py)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

HANGING = """
import asyncio

import pytest_asyncio

async def waits_for_a_reply_that_never_comes():
    await asyncio.Event().wait()

async def test_that_hangs():
    await asyncio.wait_for(waits_for_a_reply_that_never_comes(), 600)

async def waits_for_a_closing_that_never_ends():
    await asyncio.get_running_loop().create_future()

@pytest_asyncio.fixture
async def a_teardown_that_hangs():
    yield
    await waits_for_a_closing_that_never_ends()

async def test_whose_teardown_hangs(a_teardown_that_hangs):
    pass

def test_after_it():
    pass
"""


def test_a_hanging_test_fails_with_its_tasks_stacks_and_the_next_test_runs(tmp_path: Path) -> None:
    (tmp_path / "test_hanging.py").write_text(HANGING)
    root = Path(__file__).resolve().parents[1]
    options = ["-p", "tests.hangs", "-p", "no:cacheprovider", "--timeout", "1", "-o", "asyncio_mode=auto"]
    alone = ["-c", "/dev/null", "--rootdir", str(tmp_path)]  # not this project's settings
    run = subprocess.run(
        [sys.executable, "-m", "pytest", *options, *alone, str(tmp_path)],
        cwd=root,
        env={"PYTHONPATH": str(root), "PATH": ""},
        capture_output=True,
        text=True,
        timeout=120,
    )
    out = run.stdout
    assert run.returncode == 1, out
    assert "1 failed, 2 passed, 1 error" in out
    assert "Timeout (>1.0s) from pytest-timeout" in out
    assert "asyncio tasks at the timeout" in out
    assert "in waits_for_a_reply_that_never_comes" in out  # the task's own frame, not only the loop's select
    # A fixture's teardown: through the generator pytest-asyncio awaits, to the future it waits on.
    assert "in a_teardown_that_hangs" in out
    assert "in waits_for_a_closing_that_never_ends" in out
    assert "waits on <Future pending" in out
