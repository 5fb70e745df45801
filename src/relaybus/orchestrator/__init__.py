"""The orchestrator: publish tasks, await their results, run plans (DAGs of tasks) and aggregate them."""

from .dag import check_dag
from .orchestrator import DEFAULT_TIMEOUT_S, ProjectOrchestrator
from .plan import Plan, PlanFile, load_plan, parse_plan, task_id_for
from .pricing import ModelPrice, Prices
from .result import PlanResult, TaskTiming
from .scheduler import PlanProgress, ProgressCallback

__all__ = [
    "DEFAULT_TIMEOUT_S",
    "ModelPrice",
    "Plan",
    "PlanFile",
    "PlanProgress",
    "PlanResult",
    "Prices",
    "ProgressCallback",
    "ProjectOrchestrator",
    "TaskTiming",
    "check_dag",
    "load_plan",
    "parse_plan",
    "task_id_for",
]
