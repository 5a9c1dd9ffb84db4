"""What the runner needs to know about one kind of operation, and the registry of kinds."""
from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from celery import Task

    from operations.models import OperationRow
    from operations.runner import Run


@dataclass(eq=False)
class Kind:
    """One kind of long-running operation: its row, its statuses, its log, its steps.

    * ``prepare(run)`` opens what the operation needs (provider, bank, writer…, kept in
      ``run.state``) and returns the ``(key, item)`` pairs to work through, ``key`` being the
      ``"<type>#<id>"`` of ``resources_status``; raising fails the operation with the reason.
    * ``step(run, item)`` does one resource; it returns the details kept for it (saved info,
      restore details) or raises: a ``resource_errors`` exception fails that resource only.
    * ``commit(run)`` runs when every resource succeeded, before the guarded finish; it
      returns further values for the row (raising fails the operation).
    * ``undo(run)`` runs when the guarded finish found the row no longer ours after
      ``commit`` (the reaper took it): undo what ``commit`` made visible.
    * ``cleanup(run)`` always runs last (close a writer…).
    * ``reconcile(row)`` lets the reaper finish a dead worker's row as a success instead of
      failing it (values for the row) when the work is in fact complete; None to fail it.
    """

    name: str
    model: type[OperationRow]
    running: str
    success: str
    failure: str
    operation_type: str
    task_name: str
    prepare: Callable[[Run], Iterable[tuple[str, Any]]]
    step: Callable[[Run, Any], dict | None]
    label: str = "Operation"
    resource_running: str = "running"
    resource_errors: tuple[type[BaseException], ...] = (Exception,)
    commit: Callable[[Run], dict | None] | None = None
    undo: Callable[[Run], None] | None = None
    cleanup: Callable[[Run], None] | None = None
    reconcile: Callable[[OperationRow], dict | None] | None = None
    # The OperationLog column that holds this row's id (``id`` when the log shares it).
    log_key: str = "checkpoint_id"
    # Put the per-resource details into the log's ``extra_info["resources"]``.
    log_details: bool = False
    # Rows of this kind read their checkpoint (``checkpoint_id``): it cannot be deleted meanwhile.
    holds_checkpoint: bool = False
    task: Task | None = field(default=None, repr=False)

    @property
    def has_status_reason(self) -> bool:
        return any(f.name == "status_reason" for f in self.model._meta.concrete_fields)

    @property
    def has_progress_columns(self) -> bool:
        return any(f.name == "bytes_done" for f in self.model._meta.concrete_fields)


_kinds: dict[str, Kind] = {}


def add_kind(kind: Kind) -> None:
    """Record a kind (``operations.runner.register`` calls this and builds its task)."""
    if kind.name in _kinds and _kinds[kind.name] is not kind:
        raise ValueError(f"operation kind {kind.name!r} is registered twice")
    _kinds[kind.name] = kind


def registered_kinds() -> list[Kind]:
    return list(_kinds.values())


def kind_named(name: str) -> Kind:
    return _kinds[name]
