"""Database adapter: SQLAlchemy 2 tables, engine set-up, Alembic migrations, unit of work."""
