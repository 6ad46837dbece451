"""Persistence: SQL schema and migrations, the ledger in SQL, repositories, the group-commit writer."""
