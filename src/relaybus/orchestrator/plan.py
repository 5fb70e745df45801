"""Plans: a DAG of tasks, built in code or loaded from a YAML or JSON file.

A plan file (YAML or JSON, same schema; see ``examples/plans/``)::

    name: release-notes            # required: letters, digits, '_', '-', '.'
    description: free text         # optional
    defaults:                      # optional: applied to every task that does not set its own
      topic: docs.write            #   any task field but key, prompt, input and depends_on
      timeout_s: 120
      metadata: {team: docs}       #   merged with each task's own metadata
    prices:                        # optional: per model, per million tokens, for the cost columns
      gpt-4o-mini: {prompt_per_million: 0.15, completion_per_million: 0.6}
      "*": {prompt_per_million: 1.0, completion_per_million: 2.0}   # any other model
    tasks:
      - key: outline               # required, unique in the plan: how other tasks and the results name it
        topic: project.plan        # routing: task.<topic>; required unless `agent` or defaults give one
        agent: planner             # optional: address one agent by name (routed as agent.<name>)
        mode: llm                  # optional: llm, api, script or a custom mode
        prompt: Plan the release notes.
        input: {version: "2.0"}    # any JSON object
        depends_on: []             # keys of tasks whose outputs this one needs
        timeout_s: 60              # optional: seconds from publish until the task ends as TIMEOUT
        priority: 0                # 0-9
        metadata: {}               # str -> str; "model" here names the model for the cost columns

A task with ``depends_on`` receives its dependencies' outputs in ``input["dependencies"]``, keyed by each
dependency's task id as a string; that input field is reserved for it.

Task ids are stable: ``uuid5`` of a secret, the plan name, a run id and the key (:func:`task_id_for`). The
same file loaded with the same run id gives the same ids, so a restarted named orchestrator resumes the same
tasks; a new run id runs the plan afresh. Every error names the file, the task's key and line, and what to
change.
Anchors and aliases (``&a`` / ``*a``) are refused, which rules out "billion laughs" files; use ``defaults``.
"""

from __future__ import annotations

import json
import stat
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any
from uuid import UUID, uuid5

import yaml
from pydantic import BaseModel, ConfigDict, Field, JsonValue, StringConstraints, ValidationError

from relaybus.exceptions import PlanError
from relaybus.messages import NAME_RE, AgentTask

from .dag import check_dag
from .plan_secret import plan_secret
from .pricing import ModelPrice

__all__ = [
    "DEPENDENCIES_FIELD",
    "MAX_PLAN_BYTES",
    "PLAN_NAMESPACE",
    "Plan",
    "PlanDefaults",
    "PlanFile",
    "PlanTaskSpec",
    "load_plan",
    "parse_plan",
    "task_id_for",
]

DEPENDENCIES_FIELD = "dependencies"
"""The ``input`` field where a dependent task receives its dependencies' outputs."""
MAX_PLAN_BYTES = 5 * 1024 * 1024
PLAN_NAMESPACE = UUID("5d1f3c6e-6a4b-5b7e-9c2a-52656c617962")
"""Namespace of the ``uuid5`` task ids of plan files."""

Name = Annotated[str, StringConstraints(pattern=NAME_RE.pattern)]


def task_id_for(plan_name: str, key: str, run_id: str = "") -> UUID:
    """The stable id of task ``key`` of plan ``plan_name`` in run ``run_id``, salted with
    :func:`~relaybus.orchestrator.plan_secret.plan_secret` so that who knows a run's name cannot compute
    its ids (and plant a result under one, or ask a worker's cache for one)."""
    return uuid5(PLAN_NAMESPACE, f"{plan_secret()}\x1f{plan_name}\x1f{run_id}\x1f{key}")


@dataclass(frozen=True)
class Plan:
    """A DAG of tasks, checked when built: :class:`PlanError` for duplicate ids, missing dependencies,
    cycles, or a dependent task whose ``input`` already uses the reserved ``dependencies`` field.
    """

    tasks: tuple[AgentTask, ...]
    name: str = "plan"
    keys: Mapping[UUID, str] = field(default_factory=dict)
    """Task id -> human key (from a plan file); used in errors, progress and the results table."""
    prices: Mapping[str, ModelPrice] = field(default_factory=dict)
    description: str = ""

    def __post_init__(self) -> None:
        object.__setattr__(self, "tasks", tuple(self.tasks))
        check_dag(self.tasks, self.keys)
        for task in self.tasks:
            if task.depends_on and DEPENDENCIES_FIELD in task.input:
                raise PlanError(
                    f"task {self.label(task.id)} has depends_on and its input already has a "
                    f"{DEPENDENCIES_FIELD!r} field, which relaybus fills with the dependencies' outputs: "
                    "rename that field"
                )

    @classmethod
    def of(cls, plan: Plan | Sequence[AgentTask], name: str = "plan") -> Plan:
        """``plan`` itself, or a plan made of the given tasks."""
        return plan if isinstance(plan, Plan) else cls(tuple(plan), name=name)

    def label(self, task_id: UUID) -> str:
        """The task's key if it has one, else its id: for messages."""
        key = self.keys.get(task_id)
        return repr(key) if key is not None else str(task_id)

    def ordered(self) -> list[AgentTask]:
        """The tasks with every dependency before its dependents (stable otherwise)."""
        return check_dag(self.tasks, self.keys)


# -- the file schema -------------------------------------------------------------------------------------
class _Spec(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class PlanDefaults(_Spec):
    """Settings applied to every task of the file that does not set its own."""

    topic: str | None = None
    agent: Name | None = None
    mode: Name | None = None
    timeout_s: Annotated[float, Field(gt=0, le=7 * 24 * 3600)] | None = None
    priority: Annotated[int, Field(ge=0, le=9)] | None = None
    metadata: dict[str, str] = Field(default_factory=dict)


class PlanTaskSpec(_Spec):
    """One task of a plan file; see the module docstring."""

    key: Name
    topic: str | None = None
    prompt: str = ""
    input: dict[str, JsonValue] = Field(default_factory=dict)
    agent: Name | None = None
    mode: Name | None = None
    depends_on: list[Name] = Field(default_factory=list)
    timeout_s: Annotated[float, Field(gt=0, le=7 * 24 * 3600)] | None = None
    priority: Annotated[int, Field(ge=0, le=9)] | None = None
    metadata: dict[str, str] = Field(default_factory=dict)


class PlanFile(_Spec):
    """The whole plan file; :meth:`compile` turns it into a :class:`Plan`."""

    name: Name
    description: str = ""
    defaults: PlanDefaults = Field(default_factory=PlanDefaults)
    prices: dict[str, ModelPrice] = Field(default_factory=dict)
    tasks: Annotated[list[PlanTaskSpec], Field(min_length=1, max_length=100_000)]

    def compile(self, *, run_id: str = "", source: str = "<plan>", lines: Sequence[int] = ()) -> Plan:
        """Build the :class:`Plan`; ``source`` and ``lines`` (line of each task) only shape error messages."""

        def where(index: int) -> str:
            return _locate(source, lines, index, f"task {self.tasks[index].key!r}")

        keys = self._unique_keys(where)
        ids = {key: task_id_for(self.name, key, run_id) for key in keys}
        tasks = tuple(self._task(i, ids, where) for i in range(len(self.tasks)))
        try:
            return Plan(
                tasks,
                name=self.name,
                keys={ids[key]: key for key in keys},
                prices=self.prices,
                description=self.description,
            )
        except PlanError as exc:
            raise PlanError(f"{source}: {exc}") from None

    def _unique_keys(self, where: Callable[[int], str]) -> list[str]:
        """The task keys in file order; :class:`PlanError` for a key used twice."""
        index_of: dict[str, int] = {}
        for i, spec in enumerate(self.tasks):
            if spec.key in index_of:
                raise PlanError(
                    f"{where(i)}: the key is already used by tasks[{index_of[spec.key]}]; keys must be unique"
                )
            index_of[spec.key] = i
        return list(index_of)

    def _task(self, index: int, ids: Mapping[str, UUID], where: Callable[[int], str]) -> AgentTask:
        """Task ``index`` of the file with the defaults applied; ``where`` names it in errors."""
        spec = self.tasks[index]
        for dep in spec.depends_on:
            if dep not in ids:
                known = ", ".join(list(ids)[:20]) + (", ..." if len(ids) > 20 else "")
                raise PlanError(
                    f"{where(index)}: depends_on names {dep!r}, which is no task key of this plan "
                    f"(keys: {known}); fix the key or add that task"
                )
        d = self.defaults
        agent = spec.agent or d.agent
        topic = spec.topic or d.topic or agent
        if topic is None:
            raise PlanError(
                f"{where(index)}: the task has no topic: give it a `topic` (or an `agent`), "
                "or set `defaults.topic`"
            )
        fields: dict[str, Any] = {
            "id": ids[spec.key],
            "topic": topic,
            "prompt": spec.prompt,
            "input": spec.input,
            "agent": agent,
            "mode": spec.mode or d.mode,
            "depends_on": tuple(ids[dep] for dep in spec.depends_on),
            "timeout_s": spec.timeout_s if spec.timeout_s is not None else d.timeout_s,
            "priority": spec.priority if spec.priority is not None else (d.priority or 0),
            "metadata": {**d.metadata, **spec.metadata, "relaybus-plan": self.name, "relaybus-key": spec.key},
        }
        try:
            return AgentTask(**fields)
        except ValidationError as exc:
            raise PlanError(f"{where(index)}: {_errors(exc)}") from None


# -- loading ---------------------------------------------------------------------------------------------
def _errors(exc: ValidationError, skip: int = 0) -> str:
    parts = []
    for err in exc.errors(include_url=False, include_input=False)[:3]:
        loc = ".".join(str(p) for p in err["loc"][skip:]) or "value"
        hint = "; did you mean timeout_s?" if err["loc"][-1:] == ("timeout",) else ""
        parts.append(f"{loc}: {err['msg'].removeprefix('Value error, ')}{hint}")
    more = exc.error_count() - len(parts)
    return "; ".join(parts) + (f" (+{more} more)" if more > 0 else "")


def _locate(source: str, lines: Sequence[int], index: int, who: str) -> str:
    """``<source>: <who> (tasks[<index>], line <n>)``: where a task of a plan file is, for messages."""
    line = f", line {lines[index]}" if index < len(lines) else ""
    return f"{source}: {who} (tasks[{index}]{line})"


def _task_lines(text: str) -> list[int]:
    """The 1-based line where each item of the top-level ``tasks`` list starts (empty if not found)."""
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError:
        return []
    if not isinstance(root, yaml.MappingNode):
        return []
    for key_node, value_node in root.value:
        if getattr(key_node, "value", None) == "tasks" and isinstance(value_node, yaml.SequenceNode):
            return [item.start_mark.line + 1 for item in value_node.value]
    return []


def _load_yaml(text: str, source: str) -> object:
    try:
        for event in yaml.parse(text, Loader=yaml.SafeLoader):
            if isinstance(event, yaml.AliasEvent):
                line = event.start_mark.line + 1 if event.start_mark else "?"
                raise PlanError(
                    f"{source}: line {line}: YAML anchors and aliases (&name / *name) are not allowed in "
                    "plan files; put shared settings under `defaults:`"
                )
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise PlanError(f"{source}: not valid YAML: {' '.join(str(exc).split())}") from None


def _load_json(text: str, source: str) -> object:
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise PlanError(
            f"{source}: not valid JSON: line {exc.lineno}, column {exc.colno}: {exc.msg}"
        ) from None
    except RecursionError:
        raise PlanError(f"{source}: not valid JSON: nested too deeply") from None


def parse_plan(text: str, *, source: str = "<plan>", fmt: str = "yaml", run_id: str = "") -> Plan:
    """Parse and check a plan file's text (``fmt`` ``"yaml"`` or ``"json"``); :class:`PlanError` if wrong."""
    if len(text.encode("utf-8", "replace")) > MAX_PLAN_BYTES:
        raise PlanError(f"{source}: the file is larger than {MAX_PLAN_BYTES} bytes; split the plan")
    data = _load_json(text, source) if fmt == "json" else _load_yaml(text, source)
    if not isinstance(data, dict):
        raise PlanError(
            f"{source}: a plan file holds a mapping with `name` and `tasks` (got {type(data).__name__}); "
            "see examples/plans/ for the schema"
        )
    lines = _task_lines(text)
    try:
        spec = PlanFile.model_validate(data)
    except ValidationError as exc:
        raise PlanError(_file_errors(exc, data, source, lines)) from None
    return spec.compile(run_id=run_id, source=source, lines=lines)


def _file_errors(exc: ValidationError, data: Mapping[str, object], source: str, lines: Sequence[int]) -> str:
    """Name the task of the first error that is inside ``tasks[i]``; else describe the errors plainly."""
    first = exc.errors(include_url=False, include_input=False)[0]
    loc = first["loc"]
    tasks = data.get("tasks")
    if len(loc) >= 2 and loc[0] == "tasks" and isinstance(loc[1], int) and isinstance(tasks, list):
        index = loc[1]
        item = tasks[index] if index < len(tasks) else None
        key = item.get("key") if isinstance(item, dict) else None
        who = f"task {key!r}" if isinstance(key, str) else "a task"
        field_name = ".".join(str(p) for p in loc[2:]) or "the task"
        if not isinstance(item, dict):
            problem = "each task must be a mapping with at least `key` and `topic`"
        else:
            problem = f"{field_name}: {first['msg']}" + (
                "; did you mean timeout_s?" if field_name == "timeout" else ""
            )
        return f"{_locate(source, lines, index, who)}: {problem}"
    return f"{source}: {_errors(exc)}"


def load_plan(path: str | Path, *, run_id: str = "") -> Plan:
    """Read a plan file (``.json`` as JSON, else YAML) and check it; :class:`PlanError` if it is wrong."""
    path = Path(path)
    try:
        if not stat.S_ISREG(path.stat().st_mode):
            raise PlanError(f"{path}: not a regular file; give the path of a YAML or JSON plan file")
        with path.open("rb") as file:
            data = file.read(MAX_PLAN_BYTES + 1)  # bounded even if the file grows while we read
        if len(data) > MAX_PLAN_BYTES:
            raise PlanError(f"{path}: the file is larger than {MAX_PLAN_BYTES} bytes; split the plan")
        text = data.decode("utf-8")
    except FileNotFoundError:
        raise PlanError(f"{path}: no such plan file") from None
    except UnicodeDecodeError as exc:
        raise PlanError(f"{path}: not UTF-8 text (invalid byte at offset {exc.start})") from None
    except OSError as exc:
        raise PlanError(f"{path}: cannot read the plan file: {exc.strerror or exc}") from None
    fmt = "json" if path.suffix.lower() == ".json" else "yaml"
    return parse_plan(text, source=str(path), fmt=fmt, run_id=run_id)
