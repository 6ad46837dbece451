"""A ``config.change`` audit record when a process starts with another configuration than the
last one did: an operator can see in the audit chain when limits or the node were changed."""

from __future__ import annotations

import dataclasses
import hashlib
from typing import Any

import orjson

from lngate.bootstrap import Core
from lngate.config import Config
from lngate.store import audit, system_state
from lngate.store.db import Tx

STATE_KEY = "config"


def audit_config_change(core: Core) -> bool:
    """Appends the record (with the settings that changed) unless the configuration is the one
    of the last start; True when it did."""
    summary = config_summary(core.config)
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

    return core.write_sync(op)


def config_summary(config: Config) -> dict[str, Any]:
    """The configuration as JSON (paths and URLs as strings, keys sorted)."""
    raw = dataclasses.asdict(config)
    return orjson.loads(orjson.dumps(raw, default=str, option=orjson.OPT_SORT_KEYS))  # type: ignore[no-any-return]
