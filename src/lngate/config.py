"""Configuration: one frozen object, built once at start-up and passed to what needs it.

Sources, later ones winning: defaults, the TOML file (``--config``), environment variables
(``LNGATE_DATABASE_URL``), command-line flags. No module reads settings on its own.
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from lngate.domain.treasury import TreasuryPolicy
from lngate.domain.withdrawals import WithdrawalPolicy

DEFAULT_DATA_DIR = Path("lngate-data")


@dataclass(frozen=True, slots=True)
class LndConfig:
    rest_url: str
    tls_cert: Path | None
    invoice_macaroon: Path  # the API process: create and read invoices only
    spending_macaroon: Path | None  # the payment worker only


@dataclass(frozen=True, slots=True)
class Limits:
    """Amount bounds; all msat. Defaults suit 'small amounts first'."""

    transfer_max_msat: int = 100_000_000_000  # 1 BTC
    deposit_min_msat: int = 1_000
    deposit_max_msat: int = 10_000_000_000  # 0.1 BTC
    invoice_expiry_s: int = 3600
    allow_amountless_deposits: bool = True


@dataclass(frozen=True, slots=True)
class Config:
    data_dir: Path = DEFAULT_DATA_DIR
    database_url: str = ""  # empty: SQLite in the data directory
    host: str = "127.0.0.1"
    port: int = 8000
    admin_host: str = "127.0.0.1"
    admin_port: int = 8001
    public_url: str = ""  # the URL wallets reach us at; LNURL callbacks are built on it
    receive_window_ms: int = 5_000
    node_backend: str = "simnet"  # or "lnd"
    lnd: LndConfig | None = None
    limits: Limits = field(default_factory=Limits)
    withdrawals: WithdrawalPolicy = field(default_factory=WithdrawalPolicy)
    treasury: TreasuryPolicy = field(default_factory=TreasuryPolicy)
    # Development and tests only: let Lightning Address withdrawals reach private addresses.
    lnurl_allow_private_hosts: bool = False
    # Reconciliation: how often, and the shortfall (books minus assets) that halts withdrawals.
    reconcile_interval_s: float = 30.0
    reconcile_tolerance_msat: int = 10_000_000
    inbound_floor_msat: int = 0  # warn when the node can receive less than this
    # Edge limits, applied before any work: request body size; live event streams per user
    # (per API process); unsigned LNURL callbacks (each mints an invoice) per client address.
    max_body_bytes: int = 64 * 1024
    event_streams_per_user: int = 5
    lnurl_callbacks_per_minute: int = 120
    log_json: bool = True

    @property
    def effective_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.data_dir / 'lngate.sqlite3').resolve()}"

    @property
    def server_key_path(self) -> Path:
        return self.data_dir / "server.key"

    @property
    def simnet_dir(self) -> Path:
        return self.data_dir / "simnet"

    @property
    def effective_public_url(self) -> str:
        return self.public_url or f"http://{self.host}:{self.port}"

    @property
    def public_host(self) -> str:
        """The host part of Lightning Addresses (``name@host``)."""
        rest = self.effective_public_url.split("://", 1)[-1]
        return rest.split("/", 1)[0]


def load_config(
    *,
    data_dir: Path | None = None,
    config_file: Path | None = None,
    env: dict[str, str] | None = None,
    **overrides: Any,
) -> Config:
    env = dict(os.environ) if env is None else env
    cfg = Config()
    if config_file is not None:
        cfg = _apply_file(cfg, config_file)
    if env.get("LNGATE_DATA_DIR"):
        cfg = replace(cfg, data_dir=Path(env["LNGATE_DATA_DIR"]))
    if env.get("LNGATE_DATABASE_URL"):
        cfg = replace(cfg, database_url=env["LNGATE_DATABASE_URL"])
    if data_dir is not None:
        cfg = replace(cfg, data_dir=data_dir)
    return replace(cfg, **{k: v for k, v in overrides.items() if v is not None})


def _apply_file(cfg: Config, path: Path) -> Config:
    with path.open("rb") as fh:
        raw = tomllib.load(fh)
    base = path.parent
    top = {k: v for k, v in raw.items() if not isinstance(v, dict)}
    sections = ("lnd", "limits", "withdrawals", "treasury")
    known = {f for f in Config.__dataclass_fields__ if f not in sections}
    unknown = set(top) - known
    if unknown:
        raise ValueError(f"unknown settings in {path}: {', '.join(sorted(unknown))}")
    if "data_dir" in top:
        top["data_dir"] = base / top["data_dir"]
    cfg = replace(cfg, **top)
    if "limits" in raw:
        cfg = replace(cfg, limits=replace(cfg.limits, **raw["limits"]))
    if "withdrawals" in raw:
        section = dict(raw["withdrawals"])
        if "blocked_payees" in section:
            section["blocked_payees"] = frozenset(section["blocked_payees"])
        cfg = replace(cfg, withdrawals=replace(cfg.withdrawals, **section))
    if "treasury" in raw:
        cfg = replace(cfg, treasury=replace(cfg.treasury, **raw["treasury"]))
    node = raw.get("node", {})
    if "backend" in node:
        cfg = replace(cfg, node_backend=str(node["backend"]))
    if "lnd" in raw:
        lnd = raw["lnd"]

        def _path(key: str) -> Path | None:
            return (base / lnd[key]) if lnd.get(key) else None

        invoice = _path("invoice_macaroon")
        if invoice is None:
            raise ValueError(f"[lnd] invoice_macaroon is required in {path}")
        cfg = replace(
            cfg,
            lnd=LndConfig(
                rest_url=str(lnd["rest_url"]),
                tls_cert=_path("tls_cert"),
                invoice_macaroon=invoice,
                spending_macaroon=_path("spending_macaroon"),
            ),
        )
    return cfg
