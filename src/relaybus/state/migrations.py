"""The store's schema as an ordered list of migrations, applied at start in one transaction.

``relaybus_schema_version`` holds one row: the number of migrations applied. A store opened by this code
applies the missing ones in order; a store whose version is higher than :data:`LATEST_VERSION` was written
by a newer relaybus and is refused (:class:`SchemaTooNew`) rather than used half-understood. A migration is
never edited once released: change the schema by appending one. The SQL is the subset that SQLite and
PostgreSQL share (``DOUBLE PRECISION`` is REAL to SQLite), so both stores run the same statements.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from .errors import SchemaTooNew

if TYPE_CHECKING:
    from .session import Session

__all__ = ["LATEST_VERSION", "MIGRATIONS", "Migration", "migrate"]


@dataclass(frozen=True, slots=True)
class Migration:
    """One step of the schema: its version (its position, from 1), what it does, and its statements."""

    version: int
    description: str
    statements: tuple[str, ...]


MIGRATIONS: tuple[Migration, ...] = (
    Migration(
        1,
        "claims, results, journal and run history",
        (
            # One row per claimed task id. holder is NULL once the claim ended (completed or released).
            """CREATE TABLE relaybus_claims (
                task_id TEXT PRIMARY KEY,
                digest TEXT NOT NULL,
                holder TEXT,
                attempt INTEGER NOT NULL,
                expires_at DOUBLE PRECISION NOT NULL,
                updated_at DOUBLE PRECISION NOT NULL
            )""",
            "CREATE INDEX relaybus_claims_updated ON relaybus_claims (updated_at)",
            # The one copy of each task's result (ExecutionResult JSON), also what run history shows.
            """CREATE TABLE relaybus_results (
                task_id TEXT PRIMARY KEY,
                result TEXT NOT NULL,
                stored_at DOUBLE PRECISION NOT NULL
            )""",
            "CREATE INDEX relaybus_results_stored ON relaybus_results (stored_at)",
            """CREATE TABLE relaybus_journal (
                task_id TEXT NOT NULL,
                step INTEGER NOT NULL,
                kind TEXT NOT NULL,
                data TEXT NOT NULL,
                recorded_at DOUBLE PRECISION NOT NULL,
                PRIMARY KEY (task_id, step)
            )""",
            "CREATE INDEX relaybus_journal_recorded ON relaybus_journal (recorded_at)",
            """CREATE TABLE relaybus_runs (
                run_id TEXT PRIMARY KEY,
                name TEXT NOT NULL,
                started_at DOUBLE PRECISION NOT NULL,
                updated_at DOUBLE PRECISION NOT NULL
            )""",
            "CREATE INDEX relaybus_runs_started ON relaybus_runs (started_at)",
            "CREATE INDEX relaybus_runs_updated ON relaybus_runs (updated_at)",
            """CREATE TABLE relaybus_run_tasks (
                run_id TEXT NOT NULL,
                task_id TEXT NOT NULL,
                position INTEGER NOT NULL,
                key TEXT,
                target TEXT NOT NULL,
                depends_on TEXT NOT NULL,
                status TEXT NOT NULL,
                worker TEXT,
                attempts INTEGER NOT NULL,
                published_at DOUBLE PRECISION,
                started_at DOUBLE PRECISION,
                finished_at DOUBLE PRECISION,
                prompt_tokens INTEGER NOT NULL,
                completion_tokens INTEGER NOT NULL,
                requests INTEGER NOT NULL,
                cost DOUBLE PRECISION,
                PRIMARY KEY (run_id, task_id)
            )""",
            """CREATE TABLE relaybus_task_events (
                run_id TEXT NOT NULL,
                task_id TEXT NOT NULL,
                seq INTEGER NOT NULL,
                kind TEXT NOT NULL,
                at DOUBLE PRECISION NOT NULL,
                worker TEXT,
                attempt INTEGER,
                PRIMARY KEY (run_id, task_id, seq)
            )""",
        ),
    ),
    Migration(
        2,
        "the trace id each run task was published with",
        # NULL for the tasks recorded before (their trace ids were never kept).
        ("ALTER TABLE relaybus_run_tasks ADD COLUMN trace_id TEXT",),
    ),
)

LATEST_VERSION = MIGRATIONS[-1].version
"""The schema version this code writes."""


async def migrate(session: Session, url: str, migrations: tuple[Migration, ...] = MIGRATIONS) -> int:
    """Bring the schema to the last of ``migrations``, inside the caller's (locked) transaction.

    Returns the version found before (0 for an empty database). ``url`` (masked) is for the error message.
    """
    latest = migrations[-1].version if migrations else 0
    await session.execute("CREATE TABLE IF NOT EXISTS relaybus_schema_version (version INTEGER NOT NULL)")
    row = await session.fetchone("SELECT version FROM relaybus_schema_version")
    if row is None:
        await session.execute("INSERT INTO relaybus_schema_version (version) VALUES (0)")
        found = 0
    else:
        found = int(row["version"])
    if found > latest:
        raise SchemaTooNew(
            f"the state store at {url} has schema version {found}, newer than this relaybus knows "
            f"({latest}): upgrade relaybus on this host, or point it at another store"
        )
    for migration in migrations:
        if migration.version > found:
            for statement in migration.statements:
                await session.execute(statement)
    if latest > found:
        await session.execute("UPDATE relaybus_schema_version SET version = ?", latest)
    return found
