"""``python -m bench.consume_paths`` runs: every consume path drains its queue, each message acked once."""

from __future__ import annotations

import json

import pytest
from bench.common import DEFAULT_AMQP_URL
from bench.consume_paths import PATHS

from .support import run_bench


@pytest.mark.integration
def test_every_consume_path_acks_every_message_and_reports_its_cost(amqp_url: str) -> None:
    code, stdout, stderr = run_bench(
        "bench.consume_paths", ["--messages", "300", "--reps", "1", "--json"], amqp_url
    )
    assert code == 0, stderr[-3000:]
    rows = json.loads(stdout)
    assert [row["path"] for row in rows] == list(PATHS)
    for row in rows:
        assert row["acked"] == 300, row
        assert row["left_in_queue"] == 0, row  # acked, not just received: nothing returns to the queue
        assert row["cpu_us_per_delivery"] > 0, row
    assert rows[0]["vs_aio_pika"] == 1.0


def test_a_bad_count_is_refused_with_the_flag_named() -> None:
    code, _, stderr = run_bench("bench.consume_paths", ["--messages", "0"], DEFAULT_AMQP_URL, timeout=60)
    assert code == 2
    assert "--messages" in stderr
