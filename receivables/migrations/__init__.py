"""Alembic revisions of the committed store, applied by ``schema.migrate``."""
