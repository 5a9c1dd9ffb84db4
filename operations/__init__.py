"""The lifecycle of every long-running row: one runner, one reaper, one enqueue policy.

A long-running operation is a row (``OperationRow`` columns: ``status``, ``worker``,
``heartbeat_at``, ``resources_status``, ``resources_reason``) plus an ``OperationLog`` row.
Each domain declares its **kind** once, at import of its flows module, with
``operations.runner.register(Kind(...))``; the runner then owns everything else: the
guarded claim, the heartbeat thread, the per-resource loop with per-resource status and
reason, progress, the guarded finish or fail, the operation log, the Celery task (named
``task_name``, retried on transient database/broker errors), the reaper of dead workers'
rows, the soft time limit, and the enqueue-after-commit policy (broker down → the row fails
and the API answers 503).

Registered today: ``checkpoint_protect`` and ``checkpoint_delete`` (``protection.flows``),
``restore`` (``restores.flows``), ``verify`` (``protection.verifications.flows``).

Declaring a new kind — e.g. COPY of a checkpoint into another bank — is a declaration plus
a step function::

    # protection/copies.py (the module is imported by its app's ``ready()``)
    def _copy_prepare(run: Run) -> list[tuple[str, Any]]:
        run.state.update(source=..., target=...)         # open both banks; raise OperationFailed(reason)
        return [(resource_key(r.type, r.id), r) for r in resources]

    def _copy_step(run: Run, resource) -> dict:           # one resource; raise to fail only it
        ...                                               # report run.progress.on_progress(Progress)
        return {"copied": ...}                            # kept in run.details[key]

    COPY_KIND = register(Kind(
        name="checkpoint_copy", label="Copy", model=Copy, operation_type="copy",
        task_name="karbor.protection.checkpoint_copy",     # stable: queues and beat keep it
        running="copying", success="success", failure="fail", resource_running="copying",
        prepare=_copy_prepare, step=_copy_step,
        commit=_copy_commit,       # optional: all resources done → make it visible, return row values
        undo=_copy_undo,           # optional: the reaper took the row after commit → take it back
        cleanup=_copy_cleanup,     # optional: always, last (close writers)
        reconcile=None,            # optional: reaper finds the work complete → values to finish it
        log_key="checkpoint_id",   # the OperationLog column holding the row id ("id" to share it)
        log_details=True,          # per-resource details into the log's extra_info["resources"]
        holds_checkpoint=True,     # rows read ``checkpoint_id``: deleting it is a 409 meanwhile
    ))

The service that starts one validates, takes its locks and calls
``operation_create(kind=COPY_KIND, enqueue=enqueue, project_id=..., provider_id=...,
checkpoint_id=..., log_values={...})`` inside its transaction (``checkpoint_hold`` first, for
a kind that reads a checkpoint); ``operation_run(kind=COPY_KIND, row_id=...)`` runs it
in-process (management commands), the kind's task (``COPY_KIND.task``) in a worker. A
scheduled run is the same: a kind whose ``prepare`` reads the schedule, or a service that
creates rows of an existing kind with ``operation_create``.

The model gets ``OperationRow`` as its first base (same columns, no migration for existing
tables); a ``status_reason`` column is used when the model has one (else the reason is kept
under ``resources_reason["*"]``), and progress columns (``bytes_done``…) are written when the
model has them (the log always gets them).
"""
