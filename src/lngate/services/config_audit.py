"""A ``config.change`` audit record when a process starts with another configuration than the
last one did: an operator can see in the audit chain when limits or the node were changed."""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Callable
from typing import Any

import orjson

from lngate.config import Config
from lngate.services.ports import UnitOfWork
from lngate.store import audit, system_state
from lngate.store.db import Tx

STATE_KEY = "config"


class ConfigAudit:
    """Run once at a process's start (or a cluster's), before it serves anything."""

    def __init__(self, uow: UnitOfWork, config: Config) -> None:
        self._uow = uow
        self._config = config

    def record_change_sync(self) -> bool:
        """Appends the record (with the settings that changed) unless the configuration is
        the one of the last start; True when it did."""
        return self._uow.write_sync(_record_change_op(config_summary(self._config)))


def _record_change_op(summary: dict[str, Any]) -> Callable[[Tx], bool]:
    digest = hashlib.sha256(orjson.dumps(summary, option=orjson.OPT_SORT_KEYS)).hexdigest()

    def op(tx: Tx) -> bool:
        previous = system_state.get(tx, STATE_KEY)
        if previous and previous.get("digest") == digest:
            return False
        before = (previous or {}).get("summary", {})
        changed = sorted(k for k in summary if before.get(k) != summary[k])
        audit.append(
            tx,
            actor="lngate",
            action="config.change",
            subject="config",
            reason="configuration differs from the last start",
            details={"changed": {k: summary[k] for k in changed}},
        )
        system_state.put(tx, STATE_KEY, {"digest": digest, "summary": summary})
        return True

    return op


def config_summary(config: Config) -> dict[str, Any]:
    """The configuration as JSON (paths and URLs as strings, keys sorted)."""
    raw = dataclasses.asdict(config)
    return orjson.loads(orjson.dumps(raw, default=str, option=orjson.OPT_SORT_KEYS))  # type: ignore[no-any-return]
