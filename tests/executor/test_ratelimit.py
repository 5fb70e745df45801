"""Rate limits: token buckets for requests and tokens per minute, shared, first come first served."""

from __future__ import annotations

import asyncio

import pytest

from relaybus.exceptions import ConfigError
from relaybus.executor import ChatRequest, ExecutorConfig, ProviderConfig, RateLimiter, TaskExecutor
from relaybus.executor.ratelimit import TokenBucket
from relaybus.messages import AgentTask

from .mock_http import Recorder, openai_answer


class FakeClock:
    """A clock that only moves when the limiter sleeps, so the tests are exact and instant."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds
        await asyncio.sleep(0)


def test_bucket_refills_at_its_rate_up_to_capacity() -> None:
    clock = FakeClock()
    bucket = TokenBucket(rate_per_s=2.0, capacity=4.0, clock=clock)
    bucket.take(4)
    assert bucket.wait_time(1) == pytest.approx(0.5)
    clock.now += 1.0
    assert bucket.level == pytest.approx(2.0)
    clock.now += 100
    assert bucket.level == 4.0


def test_bucket_amount_over_capacity_is_clamped_so_it_is_reachable() -> None:
    bucket = TokenBucket(rate_per_s=1.0, capacity=10.0, clock=FakeClock())
    assert bucket.wait_time(50) == 0.0


def test_bucket_adjust_can_go_into_debt_and_refund_stops_at_capacity() -> None:
    clock = FakeClock()
    bucket = TokenBucket(rate_per_s=1.0, capacity=10.0, clock=clock)
    bucket.adjust(15)
    assert bucket.level == pytest.approx(-5.0)
    assert bucket.wait_time(1) == pytest.approx(6.0)
    bucket.adjust(-100)
    assert bucket.level == 10.0


async def test_requests_per_minute_lets_a_burst_through_then_spaces_requests() -> None:
    clock = FakeClock()
    limiter = RateLimiter(requests_per_minute=60, clock=clock, sleep=clock.sleep)
    waits = [await limiter.acquire() for _ in range(63)]
    assert waits[:60] == [0.0] * 60
    assert waits[60:] == [pytest.approx(1.0)] * 3  # one request per second after the burst


async def test_tokens_per_minute_waits_for_enough_tokens() -> None:
    clock = FakeClock()
    limiter = RateLimiter(tokens_per_minute=600, clock=clock, sleep=clock.sleep)  # 10 tokens/s
    assert await limiter.acquire(600) == 0.0
    assert await limiter.acquire(100) == pytest.approx(10.0)


async def test_settle_refunds_an_overestimate() -> None:
    clock = FakeClock()
    limiter = RateLimiter(tokens_per_minute=600, clock=clock, sleep=clock.sleep)
    await limiter.acquire(600)
    limiter.settle(600, 100)  # the request really cost 100 tokens
    assert await limiter.acquire(500) == 0.0


async def test_shared_limiter_serves_concurrent_tasks_in_arrival_order() -> None:
    clock = FakeClock()
    limiter = RateLimiter(requests_per_minute=60, burst=1 / 60, clock=clock, sleep=clock.sleep)
    order: list[int] = []

    async def one(i: int) -> None:
        await limiter.acquire()
        order.append(i)

    await asyncio.gather(*(one(i) for i in range(5)))
    assert order == [0, 1, 2, 3, 4]
    assert clock.now == pytest.approx(1000.0 + 4.0)  # one per second, none lost, none failed


async def test_block_for_holds_everyone_back() -> None:
    clock = FakeClock()
    limiter = RateLimiter(clock=clock, sleep=clock.sleep)
    assert not limiter.limited
    assert limiter.open_now  # the llm mode then skips acquire (and pausing the task's timeout) altogether
    assert await limiter.acquire() == 0.0
    limiter.block_for(3.0)
    assert not limiter.open_now
    assert await limiter.acquire() == pytest.approx(3.0)
    assert limiter.open_now
    assert await limiter.acquire() == 0.0
    assert not RateLimiter(requests_per_minute=60, clock=clock, sleep=clock.sleep).open_now


def test_bad_limits_are_refused_with_a_config_error() -> None:
    with pytest.raises(ConfigError, match="requests_per_minute must be positive"):
        RateLimiter(requests_per_minute=0)
    with pytest.raises(ConfigError, match="burst must be positive"):
        RateLimiter(burst=0)
    with pytest.raises(ConfigError, match="positive rate and a positive capacity"):
        TokenBucket(rate_per_s=1.0, capacity=0)
    assert "tokens_per_minute=1000" in repr(RateLimiter(tokens_per_minute=1000))


@pytest.mark.parametrize(("tokens_per_minute", "measured"), [(None, 0), (600_000, 1)])
async def test_the_llm_mode_measures_a_request_only_for_a_token_limit(
    monkeypatch: pytest.MonkeyPatch, tokens_per_minute: float | None, measured: int
) -> None:
    estimates: list[int] = []
    estimate = ChatRequest.estimated_tokens

    def counted(request: ChatRequest) -> int:
        estimates.append(estimate(request))
        return estimates[-1]

    monkeypatch.setattr(ChatRequest, "estimated_tokens", counted)
    provider = ProviderConfig(
        kind="openai", base_url="http://llm.local/v1", tokens_per_minute=tokens_per_minute
    )
    mock = Recorder(openai_answer({"content": "ok"}))
    async with TaskExecutor(ExecutorConfig(provider=provider), client=mock.client()) as executor:
        result = await executor.execute(AgentTask(topic="t", prompt="p", mode="llm"))
    assert result.ok, result.error
    assert len(estimates) == measured
