"""Named reasons: every failure or state a status can report has a documented constant here.

Modelled on Flux's ``condition_types.go``: a reason is a stable CamelCase string that tools can
match on; the message beside it is for people.
"""

from __future__ import annotations

from enum import StrEnum


class Reason(StrEnum):
    # --- progress ---------------------------------------------------------------------------
    RECONCILIATION_SUCCEEDED = "ReconciliationSucceeded"
    """The stage is converged with its desired state and its gates passed."""
    PROGRESSING = "Progressing"
    """Actions of the plan are being applied."""
    VERIFYING = "Verifying"
    """The stage is converged; gates are being evaluated."""
    AWAITING_APPROVAL = "AwaitingApproval"
    """Promotion into the stage needs a person's `pipectl approve`."""
    DEPENDENCY_NOT_READY = "DependencyNotReady"
    """A release named in dependsOn has not Succeeded at this stage yet."""
    PREVIOUS_STAGE_NOT_READY = "PreviousStageNotReady"
    """The release has not Succeeded at the stage before this one yet."""
    SUSPENDED = "Suspended"
    """``pipectl suspend``: the controller skips the release (nothing planned, applied, gated or
    promoted; what runs keeps running) until ``pipectl resume``."""
    NOT_IN_SOURCE = "NotInSource"
    """No manifest in the git source declares the release any more: it is not reconciled, and what
    it deployed is left as it is (``controller.engine.orphans``)."""
    DELETING = "Deleting"
    """The PipelineRelease object was deleted: its finalizer tears the release down and waits
    for approval of each destructive delete (``controller.rollout.deletion``)."""

    TABLE_MAINTAINED = "TableMaintained"
    """A scheduled maintenance run of an Iceberg table (retention, compaction, snapshot expiry,
    orphan files) finished (``controller.engine.maintenance``)."""

    # --- failures ---------------------------------------------------------------------------
    VALIDATION_FAILED = "ValidationFailed"
    """The manifest is invalid; nothing was planned or applied."""
    PLAN_REFUSED = "PlanRefused"
    """The plan contains a change pipectl refuses without explicit approval."""
    APPLY_FAILED = "ApplyFailed"
    """An action failed permanently while applying the plan."""
    BACKEND_UNAVAILABLE = "BackendUnavailable"
    """A backend could not be reached; the pass will be retried with backoff."""
    RUNS_IN_FLIGHT = "RunsInFlight"
    """A DAG's code is replaced only once the live version's queued and running runs finish."""
    GATE_FAILED = "GateFailed"
    """A gate returned verdict fail."""
    GATE_INCONCLUSIVE = "GateInconclusive"
    """A gate could not decide yet (not enough data); it is re-evaluated later."""
    MAINTENANCE_FAILED = "MaintenanceFailed"
    """A table maintenance run failed; it is retried after ``RETRY`` (``controller.engine.maintenance``)."""
    ROLLED_BACK = "RolledBack"
    """A failed gate triggered the restore of the last good version at this stage."""
    ROLLING_BACK = "RollingBack"
    """A rollback is restoring the last good version and waits for a backend to show it (Airflow
    parsing the restored DAG file, a job stopping after its batch): requeued, never slept on; it
    ends RolledBack, or RollbackFailed past the restore deadline."""
    ROLLBACK_FAILED = "RollbackFailed"
    """Restoring the last good version failed; a person must act."""
    TARGET_ROLLED_BACK = "TargetRolledBack"
    """A canary stage's target rolled back the version the canary ran: the canary stopped it and
    holds the target's known good until a new version."""
    GIT_FETCH_FAILED = "GitFetchFailed"
    """The git source could not be read."""
    VERSION_REUSED = "VersionReused"
    """The commit changes what a version deploys although a stage has that version already; nothing
    is applied anywhere until ``spec.version`` is bumped."""
    RECONCILE_ERROR = "ReconcileError"
    """The pass raised an unexpected error; the release is retried with backoff, the others go on."""
    CONFIGURATION_ERROR = "ConfigurationError"
    """An environment, secret reference or flag cannot work as written; a person must change it."""
    AWAITING_BACKEND = "AwaitingBackend"
    """A change was applied and the backend does not report it yet (e.g. Airflow parsing a new DAG
    file); the release is requeued shortly instead of blocking a worker."""

    # --- refusals (used on plan actions) ----------------------------------------------------
    PARTITION_DECREASE = "PartitionDecrease"
    """Kafka cannot reduce a topic's partition count."""
    REPLICATION_FACTOR_CHANGE = "ReplicationFactorChange"
    """Changing replication factor needs a reassignment; pipectl refuses it."""
    DELETE_NOT_APPROVED = "DeleteNotApproved"
    """A resource left in live state would be deleted; needs explicit approval."""
    COLUMN_DROP = "ColumnDrop"
    """A Hive column would be dropped without a declared migration."""
    COLUMN_RENAME = "ColumnRename"
    """A Hive column would be renamed without a declared migration."""
    COLUMN_REORDER = "ColumnReorder"
    """Hive columns would be reordered without a declared migration."""
    COLUMN_TYPE_NARROWING = "ColumnTypeNarrowing"
    """A Hive column type change loses information."""
    COLUMN_TYPE_CHANGE = "ColumnTypeChange"
    """A Hive column type change (a widening one too) the engines cannot apply to an existing table."""
    PARTITION_COLUMNS_CHANGE = "PartitionColumnsChange"
    """The partition columns of an existing table differ; that needs a new table."""
    TABLE_FORMAT_CHANGE = "TableFormatChange"
    """The storage format of an existing table differs; that needs a new table."""
    NOT_OWNED = "NotOwned"
    """The live resource exists but belongs to another release (or to nobody)."""
    CHECKPOINT_INCOMPATIBLE = "CheckpointIncompatible"
    """An inPlace streaming change Spark cannot resume from the same checkpoint."""
    CONTRACT_BROKEN = "ContractBroken"
    """A change breaks a downstream transform's declared column contract."""


class Phase(StrEnum):
    """Phase of a release at one stage."""

    PENDING = "Pending"
    PROGRESSING = "Progressing"
    VERIFYING = "Verifying"
    SUCCEEDED = "Succeeded"
    FAILED = "Failed"
    ROLLED_BACK = "RolledBack"
    ROLLBACK_FAILED = "RollbackFailed"
    """A failed gate's restore did not bring the stage back to its known good (named in the message)."""
    BLOCKED = "Blocked"
    INVALID = "Invalid"


class Verdict(StrEnum):
    PASS = "pass"  # noqa: S105 - a verdict, not a password
    FAIL = "fail"
    INCONCLUSIVE = "inconclusive"
