"""The demo's plan, shipped in the package (``project.yaml``) so ``relaybus demo`` works once installed."""

from __future__ import annotations

from importlib import resources

from relaybus.orchestrator.plan import Plan, parse_plan

__all__ = ["demo_plan"]


def demo_plan(run_id: str = "") -> Plan:
    """The plan of ``relaybus demo``: planner -> five writers in parallel -> reviewer, and the editor's
    summary beside them."""
    source = resources.files("relaybus.demo").joinpath("project.yaml")
    return parse_plan(source.read_text(encoding="utf-8"), source="relaybus/demo/project.yaml", run_id=run_id)
