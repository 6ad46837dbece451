"""Persistence: schema and migrations, the ledger in SQL, repositories, group commit."""
