"""The Hive 2.3.9 metastore's transaction and lock tables (``HIVE_LOCKS``, ``TXNS``, ``NEXT_LOCK_ID``,
…) for the stack's PostgreSQL, created idempotently after the metastore is healthy.

DataNucleus' schema creation makes only the catalog's tables; the metastore's ``lock()`` API reads
and writes these through plain JDBC (``TxnHandler``), so without them every lock request fails with
"Internal error processing lock" (``relation "next_lock_id" does not exist``). PrestoDB's Iceberg
connector takes such a lock for every commit it makes, ``CALL iceberg.system.rollback_to_snapshot``
included. The columns are those ``TxnHandler`` 2.3 queries (Hive's own schema script for this
version, ``hive-txn-schema-2.3.0.postgres.sql``, is not shipped with pyspark's jars); the names are
unquoted, so PostgreSQL folds them to lower case, as ``TxnHandler``'s unquoted SQL expects. The
tables are created as role ``hive``, the metastore's JDBC user, so it owns them.
"""

from __future__ import annotations

# table → column definitions (and the primary key, if any)
TABLES: dict[str, tuple[str, ...]] = {
    "TXNS": (
        "TXN_ID bigint PRIMARY KEY", "TXN_STATE char(1) NOT NULL", "TXN_STARTED bigint NOT NULL",
        "TXN_LAST_HEARTBEAT bigint NOT NULL", "TXN_USER varchar(128) NOT NULL",
        "TXN_HOST varchar(128) NOT NULL", "TXN_AGENT_INFO varchar(128)", "TXN_META_INFO varchar(128)",
        "TXN_HEARTBEAT_COUNT integer",
    ),
    "TXN_COMPONENTS": (
        "TC_TXNID bigint REFERENCES TXNS (TXN_ID)", "TC_DATABASE varchar(128) NOT NULL",
        "TC_TABLE varchar(128)", "TC_PARTITION varchar(767) DEFAULT NULL",
        "TC_OPERATION_TYPE char(1) NOT NULL",
    ),
    "COMPLETED_TXN_COMPONENTS": (
        "CTC_TXNID bigint", "CTC_DATABASE varchar(128) NOT NULL", "CTC_TABLE varchar(256)",
        "CTC_PARTITION varchar(767)",
    ),
    "NEXT_TXN_ID": ("NTXN_NEXT bigint NOT NULL",),
    "HIVE_LOCKS": (
        "HL_LOCK_EXT_ID bigint NOT NULL", "HL_LOCK_INT_ID bigint NOT NULL", "HL_TXNID bigint",
        "HL_DB varchar(128) NOT NULL", "HL_TABLE varchar(128)", "HL_PARTITION varchar(767) DEFAULT NULL",
        "HL_LOCK_STATE char(1) NOT NULL", "HL_LOCK_TYPE char(1) NOT NULL",
        "HL_LAST_HEARTBEAT bigint NOT NULL", "HL_ACQUIRED_AT bigint", "HL_USER varchar(128) NOT NULL",
        "HL_HOST varchar(128) NOT NULL", "HL_HEARTBEAT_COUNT integer", "HL_AGENT_INFO varchar(128)",
        "HL_BLOCKEDBY_EXT_ID bigint", "HL_BLOCKEDBY_INT_ID bigint",
        "PRIMARY KEY (HL_LOCK_EXT_ID, HL_LOCK_INT_ID)",
    ),
    "NEXT_LOCK_ID": ("NL_NEXT bigint NOT NULL",),
    "COMPACTION_QUEUE": (
        "CQ_ID bigint PRIMARY KEY", "CQ_DATABASE varchar(128) NOT NULL", "CQ_TABLE varchar(128) NOT NULL",
        "CQ_PARTITION varchar(767)", "CQ_STATE char(1) NOT NULL", "CQ_TYPE char(1) NOT NULL",
        "CQ_TBLPROPERTIES varchar(2048)", "CQ_WORKER_ID varchar(128)", "CQ_START bigint",
        "CQ_RUN_AS varchar(128)", "CQ_HIGHEST_TXN_ID bigint", "CQ_META_INFO bytea",
        "CQ_HADOOP_JOB_ID varchar(32)",
    ),
    "NEXT_COMPACTION_QUEUE_ID": ("NCQ_NEXT bigint NOT NULL",),
    "COMPLETED_COMPACTIONS": (
        "CC_ID bigint PRIMARY KEY", "CC_DATABASE varchar(128) NOT NULL", "CC_TABLE varchar(128) NOT NULL",
        "CC_PARTITION varchar(767)", "CC_STATE char(1) NOT NULL", "CC_TYPE char(1) NOT NULL",
        "CC_TBLPROPERTIES varchar(2048)", "CC_WORKER_ID varchar(128)", "CC_START bigint",
        "CC_END bigint", "CC_RUN_AS varchar(128)", "CC_HIGHEST_TXN_ID bigint", "CC_META_INFO bytea",
        "CC_HADOOP_JOB_ID varchar(32)",
    ),
    "AUX_TABLE": (
        "MT_KEY1 varchar(128) NOT NULL", "MT_KEY2 bigint NOT NULL", "MT_COMMENT varchar(255)",
        "PRIMARY KEY (MT_KEY1, MT_KEY2)",
    ),
    "WRITE_SET": (
        "WS_DATABASE varchar(128) NOT NULL", "WS_TABLE varchar(128) NOT NULL", "WS_PARTITION varchar(767)",
        "WS_TXNID bigint NOT NULL", "WS_COMMIT_ID bigint NOT NULL", "WS_OPERATION_TYPE char(1) NOT NULL",
    ),
    "TXN_MAP": (
        "REPL_POLICY varchar(128) NOT NULL", "SRC_TXN_ID bigint NOT NULL", "TARGET_TXN_ID bigint NOT NULL",
        "PRIMARY KEY (REPL_POLICY, SRC_TXN_ID)",
    ),
}

# the one-row id counters TxnHandler increments (`SELECT … FOR UPDATE`, then `UPDATE`), and their column
COUNTERS: dict[str, str] = {"NEXT_TXN_ID": "NTXN_NEXT", "NEXT_LOCK_ID": "NL_NEXT",
                            "NEXT_COMPACTION_QUEUE_ID": "NCQ_NEXT"}

INDEXES: dict[str, tuple[str, str]] = {"TC_TXNID_INDEX": ("TXN_COMPONENTS", "TC_TXNID"),
                                       "HL_TXNID_INDEX": ("HIVE_LOCKS", "HL_TXNID")}


def txn_schema_sql(role: str = "hive") -> str:
    """One psql script that creates what is missing and changes nothing that exists: a counter is
    seeded with 1 only while its table is empty (a running metastore's ids are kept)."""
    stmts = [f"SET ROLE {role}"]
    for table, cols in TABLES.items():
        stmts.append(f"CREATE TABLE IF NOT EXISTS {table} ({', '.join(cols)})")
    for index, (table, col) in INDEXES.items():
        stmts.append(f"CREATE INDEX IF NOT EXISTS {index} ON {table} USING hash ({col})")
    for table, col in COUNTERS.items():
        stmts.append(f"INSERT INTO {table} ({col}) SELECT 1 WHERE NOT EXISTS (SELECT 1 FROM {table})")  # noqa: S608
    return ";\n".join(stmts) + ";"
