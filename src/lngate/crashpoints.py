"""Crash points for crash-safety tests: ``LNGATE_CRASHPOINTS="name:probability,..."`` makes
the process SIGKILL itself at a named step with that probability (unset: never). FoundationDB
calls this "buggify"; it lets a test kill the worker exactly between two writes that matter."""

from __future__ import annotations

import functools
import os
import random
import signal

ENV = "LNGATE_CRASHPOINTS"


@functools.cache
def _plan() -> dict[str, float]:
    plan: dict[str, float] = {}
    for item in filter(None, os.environ.get(ENV, "").split(",")):
        name, _, probability = item.partition(":")
        plan[name.strip()] = float(probability or 1)
    return plan


def crash_point(name: str) -> None:
    probability = _plan().get(name)
    if probability and random.random() < probability:
        os.kill(os.getpid(), signal.SIGKILL)
