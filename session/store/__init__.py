"""Typed stores over MongoDB (motor), one module per collection.

Every store takes the database, maps documents to frozen dataclasses, and creates the indexes it needs
in ``create_indexes`` (idempotent; ``session.db.ensure_indexes`` calls them all). Reads and client-driven
writes are tenant-scoped: another tenant's id behaves exactly like an id that does not exist.
"""
