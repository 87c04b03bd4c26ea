"""Alembic migration scripts for alertd's schema."""
