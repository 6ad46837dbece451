"""Secrets at rest and request signatures."""
