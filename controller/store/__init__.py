"""The controller's own state behind one interface (SQLAlchemy): SQLite (WAL) by default,
PostgreSQL by URL."""
