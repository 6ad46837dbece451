"""What every ``lngate`` command group shares: the configuration from the environment, JSON on
stdout, refusals as JSON on stderr, and the name of the operator at the shell.

Imported by ``lngate.cli`` and by the command groups it mounts (``lngate.treasury_cli``), so
neither has to import the other for these.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, NoReturn

import typer

from lngate.config import Config, ConfigError, load_config
from lngate.domain.errors import LngateError

EXIT_REFUSED = 2


def config_from_env(**overrides: Any) -> Config:
    """The configuration: ``LNGATE_*`` variables, and the TOML file ``LNGATE_CONFIG`` names
    (where ``lngate.cli`` puts the global ``--config``)."""
    config_file = os.environ.get("LNGATE_CONFIG")
    try:
        return load_config(config_file=Path(config_file) if config_file else None, **overrides)
    except ConfigError as exc:  # one line for the operator, not a traceback
        error = {"error": {"code": "INVALID_CONFIG", "message": str(exc)}}
        typer.echo(json.dumps(error), err=True)
        raise typer.Exit(EXIT_REFUSED) from exc


def print_json(obj: Any) -> None:
    typer.echo(json.dumps(obj, indent=2, sort_keys=False))


def operator() -> str:
    """The audit actor of a command run at the shell: ``cli:<os user>``."""
    return f"cli:{os.environ.get('USER', 'operator')}"


def fail(exc: LngateError) -> NoReturn:
    """Print a refusal as ``{"error": {"code", "message"}}`` on stderr and exit 2."""
    typer.echo(json.dumps({"error": {"code": exc.code, "message": exc.message}}), err=True)
    raise typer.Exit(EXIT_REFUSED)
