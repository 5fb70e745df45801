"""Every error relaybus raises on purpose is a ``RelaybusError``: no bare built-in errors in ``src/``.

``ConfigError`` (also a ``ValueError``) is raised for bad configuration and arguments, ``UsageError`` (also a
``RuntimeError``) for an object used out of order. The one exception is a pydantic validator, where pydantic
requires ``ValueError`` (it turns it into a ``ValidationError``).
"""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"
BARE = frozenset({"ValueError", "RuntimeError", "TypeError"})
PYDANTIC_VALIDATORS = frozenset({"field_validator", "model_validator", "validator", "root_validator"})


def _name(node: ast.expr) -> str:
    """``X`` for ``X``, ``m.X``, ``X(...)`` and ``m.X(...)``; ``""`` for anything else."""
    if isinstance(node, ast.Call):
        node = node.func
    if isinstance(node, ast.Attribute):
        return node.attr
    return node.id if isinstance(node, ast.Name) else ""


def _is_pydantic_validator(function: ast.FunctionDef | ast.AsyncFunctionDef) -> bool:
    return any(_name(decorator) in PYDANTIC_VALIDATORS for decorator in function.decorator_list)


def bare_raises(source: str, where: str) -> list[str]:
    """``where:line raises X`` for each ``raise X`` / ``raise X(...)`` of a bare built-in error in ``source``,
    except inside a function decorated as a pydantic validator."""
    found: list[str] = []

    def visit(node: ast.AST, in_validator: bool) -> None:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            in_validator = in_validator or _is_pydantic_validator(node)
        if isinstance(node, ast.Raise) and node.exc is not None and not in_validator:
            raised = _name(node.exc)
            if raised in BARE:
                found.append(f"{where}:{node.lineno} raises {raised}")
        for child in ast.iter_child_nodes(node):
            visit(child, in_validator)

    visit(ast.parse(source), in_validator=False)
    return found


def test_the_check_finds_bare_raises_and_spares_pydantic_validators() -> None:
    sample = """
import builtins
from pydantic import BaseModel, field_validator
import pydantic

def configure(x):
    if x < 0:
        raise ValueError("negative")
    raise builtins.RuntimeError

class Model(BaseModel):
    @field_validator("x")
    @classmethod
    def check(cls, v):
        def inner():
            raise ValueError("inside a validator: pydantic needs it")
        raise ValueError("pydantic needs a ValueError here")

    @pydantic.model_validator(mode="after")
    def whole(self):
        raise TypeError("also a validator")

    def method(self):
        raise TypeError("not a validator")

def fine(exc):
    try:
        pass
    except ValueError:
        raise
    raise exc
"""
    assert bare_raises(sample, "sample.py") == [
        "sample.py:8 raises ValueError",
        "sample.py:9 raises RuntimeError",
        "sample.py:24 raises TypeError",
    ]


def test_no_module_under_src_raises_a_bare_value_runtime_or_type_error() -> None:
    offenders: list[str] = []
    for path in sorted(SRC.rglob("*.py")):
        offenders += bare_raises(path.read_text(), str(path.relative_to(SRC.parent)))
    assert not offenders, (
        "raise a relaybus.exceptions error instead (ConfigError for a bad argument or setting, UsageError "
        "for an object used out of order, or a more specific RelaybusError):\n" + "\n".join(offenders)
    )
