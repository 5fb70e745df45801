"""Admission: each delivery is checked once, and a task that runs gets the deadline and chain it was checked
with; a task that must not run is answered (or dead-lettered) with the reason."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import pytest

from relaybus.agents import Agent
from relaybus.agents.admission import MAX_TASK_S, Admission, Expired, decode_task
from relaybus.agents.running import Run
from relaybus.bus.base import DEADLINE_HEADER, DELEGATION_HEADER, HeaderValue
from relaybus.bus.codec import encode_task
from relaybus.log import get_logger
from relaybus.messages import AgentTask, ExecutionResult, ExecutionStatus


class Reviewer(Agent):
    name = "reviewer"
    topics = ("code.review",)


@dataclass
class FakeDelivery:
    """Just what admission reads of a delivery."""

    body: bytes = b""
    headers: dict[str, HeaderValue] = field(default_factory=dict)
    message_id: str | None = None
    content_type: str | None = "application/json"
    reply_to: str | None = None


def delivered(task: AgentTask, **headers: HeaderValue) -> FakeDelivery:
    message = encode_task(task, reply_to=None, headers=headers)
    return FakeDelivery(message.body, dict(message.headers), message.message_id)


@pytest.fixture
def admission() -> Admission:
    return Admission(worker="host:1", max_depth=2, log=get_logger("test"))


async def admit(admission: Admission, task: AgentTask, cancelled: str | None = None, **headers: Any) -> Any:
    # A Run creates its ``done`` future on the running loop: admit where a worker would, inside the loop.
    return admission.admit(Reviewer(), task, delivered(task, **headers), cancelled)  # type: ignore[arg-type]


async def test_a_task_that_may_run_gets_the_deadline_and_chain_of_its_headers(admission: Admission) -> None:
    task = AgentTask(topic="code.review", timeout_s=5)
    deadline = time.time() + 60
    run = await admit(
        admission, task, **{DEADLINE_HEADER: f"{deadline:.3f}", DELEGATION_HEADER: "planner,writer"}
    )
    assert isinstance(run, Run)
    assert (run.task, run.agent.name) == (task, "reviewer")
    assert run.deadline == pytest.approx(deadline, abs=0.001)  # the header wins over timeout_s
    assert run.chain == ("planner", "writer")


async def test_without_a_deadline_header_the_timeout_counts_from_receipt(admission: Admission) -> None:
    before = time.time()
    run = await admit(admission, AgentTask(topic="code.review", timeout_s=30))
    assert isinstance(run, Run)
    assert run.deadline is not None
    assert before + 30 <= run.deadline <= time.time() + 30
    no_deadline = await admit(admission, AgentTask(topic="code.review"))
    assert (no_deadline.deadline, no_deadline.chain) == (None, ())


async def test_a_task_cancelled_before_it_came_is_answered_cancelled(admission: Admission) -> None:
    task = AgentTask(topic="code.review")
    result = await admit(admission, task, cancelled="the user pressed stop")
    assert isinstance(result, ExecutionResult)
    assert (result.task_id, result.status, result.agent, result.worker) == (
        task.id,
        ExecutionStatus.CANCELLED,
        "reviewer",
        "host:1",
    )
    assert result.error is not None
    assert result.error.message == "the user pressed stop"
    assert result.started_at == result.finished_at  # it never ran


@pytest.mark.parametrize(
    ("headers", "status", "error_type", "message"),
    [
        (
            {DELEGATION_HEADER: "planner,reviewer"},
            ExecutionStatus.FAILURE,
            "DelegationError",
            "delegation loop",
        ),
        ({DELEGATION_HEADER: "a,b,c"}, ExecutionStatus.FAILURE, "DelegationError", "over the limit of 2"),
        ({DELEGATION_HEADER: "not a name"}, ExecutionStatus.FAILURE, "DelegationError", "not an agent name"),
        ({DEADLINE_HEADER: "tomorrow"}, ExecutionStatus.REJECTED, "InvalidDeadline", "not a Unix time"),
        ({DEADLINE_HEADER: "-5"}, ExecutionStatus.REJECTED, "InvalidDeadline", "not a Unix time"),
    ],
)
async def test_a_task_that_must_not_run_is_answered_with_the_reason(
    admission: Admission, headers: dict[str, str], status: ExecutionStatus, error_type: str, message: str
) -> None:
    result = await admit(admission, AgentTask(topic="code.review"), **headers)
    assert isinstance(result, ExecutionResult)
    assert result.status is status
    assert result.error is not None
    assert result.error.type == error_type
    assert message in result.error.message
    assert result.error.retryable is False


async def test_a_task_whose_deadline_passed_before_it_came_is_expired_not_answered(
    admission: Admission,
) -> None:
    expired = await admit(
        admission, AgentTask(topic="code.review"), **{DEADLINE_HEADER: f"{time.time() - 2:.3f}"}
    )
    assert isinstance(expired, Expired)  # dropped by the worker: its caller stopped waiting
    assert 1.5 < expired.late_s < 60


def test_a_delivery_is_decoded_into_its_task() -> None:
    task = AgentTask(topic="code.review", prompt="p")
    assert decode_task(delivered(task), 1024 * 1024) == task  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("body", "message_id", "reason"),
    [
        (b'{"topic": "code.review"}', None, "id: field required"),
        (
            AgentTask(topic="code.review").model_dump_json().encode(),
            "other-id",
            "does not match the task's id",
        ),
        (b"not json", None, "not valid JSON"),
    ],
)
def test_a_delivery_that_must_be_dead_lettered_gives_the_reason(
    body: bytes, message_id: str | None, reason: str
) -> None:
    delivery = FakeDelivery(body, {"relaybus-schema": 1}, message_id)
    refused = decode_task(delivery, 1024 * 1024)  # type: ignore[arg-type]
    assert isinstance(refused, str)
    assert reason in refused


@pytest.mark.parametrize(
    ("reply_to", "accepted"),
    [
        ("relaybus.reply.0123abcd", True),
        ("relaybus.reply.nightly", True),
        ("amq.rabbitmq.reply-to", True),
        ("amq.rabbitmq.reply-to.g1hkABFyYWJiaXRAdm0AAAA=", True),
        ("relaybus.agent.other", False),
        ("relaybus.dead", False),
        ("relaybus.reply.", False),
        ("relaybus.replyx.a", False),
    ],
)
def test_only_a_reply_queue_may_be_the_reply_to(reply_to: str, accepted: bool) -> None:
    task = AgentTask(topic="code.review")
    message = encode_task(task, reply_to=None)
    delivery = FakeDelivery(message.body, dict(message.headers), message.message_id, reply_to=reply_to)
    outcome = decode_task(delivery, 1024 * 1024)  # type: ignore[arg-type]
    if accepted:
        assert outcome == task
    else:
        assert isinstance(outcome, str)
        assert "is not a reply queue" in outcome


@pytest.mark.parametrize("header", ["1e300", 2**62, 10**400, "inf", "nan"])
async def test_a_far_deadline_header_is_capped_at_seven_days(admission: Admission, header: str | int) -> None:
    before = time.time()
    run = await admit(admission, AgentTask(topic="code.review"), **{DEADLINE_HEADER: header})
    assert isinstance(run, Run)
    assert run.deadline is not None
    assert before + MAX_TASK_S <= run.deadline <= time.time() + MAX_TASK_S


@pytest.mark.parametrize("header", ["inf", "nan"])
async def test_an_infinite_deadline_header_leaves_the_timeout_in_force(
    admission: Admission, header: str
) -> None:
    before = time.time()
    run = await admit(admission, AgentTask(topic="code.review", timeout_s=30), **{DEADLINE_HEADER: header})
    assert isinstance(run, Run)
    assert run.deadline is not None
    assert before + 30 <= run.deadline <= time.time() + 30


async def test_a_task_addressed_to_another_agent_is_refused(admission: Admission) -> None:
    result = await admit(admission, AgentTask(topic="code.review", agent="deployer"))
    assert isinstance(result, ExecutionResult)
    assert result.status is ExecutionStatus.REJECTED
    assert result.error is not None
    assert result.error.type == "WrongAgent"
