"""Plan files: YAML or JSON, one schema, stable task ids, and errors that name the file, task and line."""

from __future__ import annotations

import json
from pathlib import Path
from uuid import uuid5

import pytest

from relaybus import AgentTask, PlanError
from relaybus.orchestrator import Plan, load_plan, parse_plan, task_id_for
from relaybus.orchestrator.plan import PLAN_NAMESPACE

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "plans"

GOOD = """\
name: notes
defaults:
  topic: docs.write
  timeout_s: 30
  metadata: {team: docs}
prices:
  gpt-x: {prompt_per_million: 1.0, completion_per_million: 2.0}
tasks:
  - key: outline
    topic: docs.plan
    prompt: Plan it.
  - key: intro
    depends_on: [outline]
    input: {words: 100}
    metadata: {model: gpt-x}
  - key: review
    agent: reviewer
    timeout_s: 5
    depends_on: [outline, intro]
"""


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_a_yaml_plan_becomes_tasks_with_defaults_applied(tmp_path: Path) -> None:
    plan = load_plan(write(tmp_path, "p.yaml", GOOD))
    assert plan.name == "notes"
    outline, intro, review = plan.tasks
    assert [plan.keys[t.id] for t in plan.tasks] == ["outline", "intro", "review"]
    assert outline.topic == "docs.plan"
    assert intro.topic == "docs.write"
    assert intro.input == {"words": 100}
    assert intro.depends_on == (outline.id,)
    assert review.depends_on == (outline.id, intro.id)
    assert review.agent == "reviewer"
    assert review.routing_key == "agent.reviewer"
    assert (outline.timeout_s, review.timeout_s) == (30, 5)
    assert intro.metadata["team"] == "docs"
    assert intro.metadata["model"] == "gpt-x"
    assert plan.prices["gpt-x"].completion_per_million == 2.0


def test_the_same_file_and_run_id_give_the_same_ids_and_a_new_run_id_new_ones(tmp_path: Path) -> None:
    path = write(tmp_path, "p.yaml", GOOD)
    first = [t.id for t in load_plan(path, run_id="r1").tasks]
    assert [t.id for t in load_plan(path, run_id="r1").tasks] == first
    assert first[0] == task_id_for("notes", "outline", "r1")
    other = [t.id for t in load_plan(path, run_id="r2").tasks]
    assert set(first).isdisjoint(other)


def test_json_and_yaml_plans_are_the_same_schema(tmp_path: Path) -> None:
    import yaml

    data = yaml.safe_load(GOOD)
    from_json = load_plan(write(tmp_path, "p.json", json.dumps(data)))
    from_yaml = load_plan(write(tmp_path, "p.yaml", GOOD))
    assert [t.model_dump(exclude={"created_at"}) for t in from_json.tasks] == [
        t.model_dump(exclude={"created_at"}) for t in from_yaml.tasks
    ]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (GOOD.replace("timeout_s: 5", "timeout_s: -1"), r"task 'review' \(tasks\[2\], line 16\): timeout_s"),
        (
            GOOD.replace("[outline, intro]", "[outline, intra]"),
            r"task 'review' .*'intra', which is no task key",
        ),
        (
            GOOD.replace("key: intro", "key: outline"),
            r"task 'outline' \(tasks\[1\], line 12\): the key is already",
        ),
        (GOOD.replace("    topic: docs.plan\n", "    topic: 'docs plan'\n"), r"task 'outline' .*topic"),
        (GOOD.replace("  topic: docs.write\n", ""), r"task 'intro' .*no topic"),
        (GOOD.replace("    prompt: Plan it.\n", "    promtp: Plan it.\n"), r"task 'outline' .*promtp: Extra"),
        (GOOD.replace("name: notes", "name: 'bad name'"), r"name: String should match"),
        (GOOD + "  - just a string\n", r"a task \(tasks\[3\], line 20\): each task must be a mapping"),
        ("- a\n- b\n", r"holds a mapping with `name` and `tasks`"),
        ("name: x\ntasks: [\n", r"not valid YAML"),
        ("name: x\ntasks: []\n", r"tasks: List should have at least 1 item"),
        (
            GOOD.replace("    topic: docs.plan\n", "    topic: docs.plan\n    depends_on: [review]\n"),
            r"dependency cycle: 'outline' -> 'intro' -> 'review' -> 'outline'|dependency cycle",
        ),
        (
            GOOD.replace("input: {words: 100}", "input: {dependencies: 1}"),
            r"'intro' has depends_on and its input already has a 'dependencies' field",
        ),
        (
            "name: x\nbase: &b {topic: t}\ntasks:\n  - <<: *b\n    key: a\n",
            r"line 4: YAML anchors and aliases",
        ),
    ],
)
def test_errors_name_the_file_the_task_and_the_problem(tmp_path: Path, text: str, expected: str) -> None:
    path = write(tmp_path, "plan.yaml", text)
    with pytest.raises(PlanError, match=expected) as info:
        load_plan(path)
    assert str(info.value).startswith(str(path))


def test_json_errors_give_the_line(tmp_path: Path) -> None:
    with pytest.raises(PlanError, match=r"p.json: not valid JSON: line 2"):
        load_plan(write(tmp_path, "p.json", '{"name": "x",\n "tasks": [}'))


def test_a_missing_or_binary_file_is_one_clear_error(tmp_path: Path) -> None:
    with pytest.raises(PlanError, match="no such plan file"):
        load_plan(tmp_path / "nope.yaml")
    path = tmp_path / "bin.yaml"
    path.write_bytes(b"name: \xff\xfe\n")
    with pytest.raises(PlanError, match="not UTF-8"):
        load_plan(path)


def test_a_plan_over_the_size_cap_is_refused() -> None:
    with pytest.raises(PlanError, match="larger than"):
        parse_plan("#" * (6 * 1024 * 1024))


def test_a_plan_file_over_the_size_cap_is_refused_without_reading_it_all(tmp_path: Path) -> None:
    big = tmp_path / "big.yaml"
    big.write_bytes(b"#" * (6 * 1024 * 1024))
    with pytest.raises(PlanError, match="larger than"):
        load_plan(big)


def test_a_device_or_directory_is_not_a_plan_file(tmp_path: Path) -> None:
    # /dev/zero never ends: reading it whole would hang and eat memory.
    for path in (Path("/dev/zero"), tmp_path):
        with pytest.raises(PlanError, match="not a regular file"):
            load_plan(path)


def test_a_plan_built_in_code_is_checked_when_built() -> None:
    a = AgentTask(topic="t")
    b = AgentTask(topic="t", depends_on=(a.id,))
    assert [t.id for t in Plan((b, a)).ordered()] == [a.id, b.id]
    with pytest.raises(PlanError, match="not in the plan"):
        Plan((b,))
    assert Plan.of([a]).tasks == (a,)


@pytest.mark.parametrize("path", sorted(EXAMPLES.glob("*.yaml")), ids=lambda p: p.name)
def test_every_example_plan_loads(path: Path) -> None:
    plan = load_plan(path)
    assert plan.tasks
    assert any(t.depends_on for t in plan.tasks)


def test_the_demo_plan_ships_inside_the_package() -> None:
    from relaybus.demo.project import demo_plan

    plan = demo_plan()
    assert plan.name == "relaybus-demo"
    assert sum(1 for t in plan.tasks if t.topic == "project.write") >= 4


def test_there_are_example_plans() -> None:
    assert len(list(EXAMPLES.glob("*.yaml"))) >= 2


def test_plan_task_ids_depend_on_a_secret_not_only_on_the_plan_and_run_names(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("RELAYBUS_PLAN_SECRET", "one")
    first = task_id_for("nightly", "build", "nightly")
    assert first == task_id_for("nightly", "build", "nightly")  # stable: a named run resumes
    monkeypatch.setenv("RELAYBUS_PLAN_SECRET", "two")
    assert task_id_for("nightly", "build", "nightly") != first
    # Not the unsalted id someone knowing only the names would compute.
    assert first != uuid5(PLAN_NAMESPACE, "nightly\x1fnightly\x1fbuild")


def test_without_the_variable_the_secret_is_kept_in_a_private_file(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv("RELAYBUS_PLAN_SECRET", raising=False)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path))
    first = task_id_for("nightly", "build", "nightly")
    secret_file = tmp_path / "relaybus" / "plan-secret"
    assert secret_file.stat().st_mode & 0o777 == 0o600
    assert len(secret_file.read_text().strip()) == 64
    assert task_id_for("nightly", "build", "nightly") == first
