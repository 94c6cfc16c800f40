"""Audit: the append-only, hash-chained run ledger and its OpenLineage export."""
