"""Configuration: one frozen object, built once at start-up and passed to what needs it.

Sources, later ones winning: defaults, the TOML file (``--config``), environment variables
(``LNGATE_DATA_DIR``, ``LNGATE_DATABASE_URL``), command-line flags. No module reads settings on
its own.

Every setting is checked when the configuration is loaded, against ``SETTINGS``: a value of the
wrong type or out of range, an unknown setting or two settings that contradict each other is a
``ConfigError`` naming the setting and where its value came from, before anything starts.
"""

from __future__ import annotations

import math
import os
import re
import tomllib
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from lngate.domain.money import MAX_AMOUNT_MSAT
from lngate.domain.treasury import DUST_LIMIT_SAT, MAX_SAT_PER_VBYTE, TreasuryPolicy
from lngate.domain.withdrawals import WithdrawalPolicy

DEFAULT_DATA_DIR = Path("lngate-data")


class ConfigError(ValueError):
    """A configuration that cannot work. The message is one line naming the setting and where
    its value came from (the file, the environment variable, the flag): the CLI prints it."""


@dataclass(frozen=True, slots=True)
class LndConfig:
    rest_url: str
    tls_cert: Path | None
    invoice_macaroon: Path  # the API process: create and read invoices only
    spending_macaroon: Path | None  # the payment worker only
    # A watch-only node's remote signer (host:port and its TLS cert), checked before sending
    # and reported: lngate.lightning.lnd.signer. No credential of the signer is ever needed.
    signer_rpc_host: str | None = None
    signer_tls_cert: Path | None = None


@dataclass(frozen=True, slots=True)
class Limits:
    """Amount bounds; all msat. Defaults suit 'small amounts first'."""

    transfer_max_msat: int = 100_000_000_000  # 1 BTC
    deposit_min_msat: int = 1_000
    deposit_max_msat: int = 10_000_000_000  # 0.1 BTC
    invoice_expiry_s: int = 3600
    allow_amountless_deposits: bool = True


@dataclass(frozen=True, slots=True)
class PayPolicy:
    """Merchant orders and their webhooks (Pay)."""

    merchant_fee_ppm: int = 0  # of each order's amount, booked as fee revenue
    order_expiry_default_s: int = 900
    order_expiry_max_s: int = 86_400
    # Development and tests only: let webhook URLs reach private addresses (the SSRF rules of
    # Lightning Addresses apply to webhook URLs otherwise).
    webhook_allow_private_hosts: bool = False
    webhook_timeout_s: float = 10.0
    webhook_max_response_bytes: int = 64 * 1024  # of a receiver's answer, kept in the log


ORDER_EXPIRY_MIN_S = 60


@dataclass(frozen=True, slots=True)
class WebPolicy:
    """The wallet and the console: sessions, sign-in throttling, TOTP for withdrawals."""

    # Withdrawals (and orders paid) above this need a current TOTP code from users who
    # enrolled one; 0: all of them.
    withdrawal_totp_above_msat: int = 0
    session_idle_s: int = 1_800  # a session unused this long is over
    session_max_s: int = 43_200  # and every session ends this long after sign-in
    login_failures_max: int = 5  # failed sign-ins in a row before the account waits
    login_lock_s: int = 900  # how long it waits


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
    pay: PayPolicy = field(default_factory=PayPolicy)
    web: WebPolicy = field(default_factory=WebPolicy)
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


# -- what each setting must be ---------------------------------------------------------------------

MAX_INVOICE_EXPIRY_S = 365 * 24 * 3600
PPM_MAX = 1_000_000  # a fee of 100 %


@dataclass(frozen=True, slots=True)
class Setting:
    """One setting: its kind (``int`` is never a bool, ``float`` is finite, ``Path`` is a string
    in the file, relative to the file, ``frozenset`` a list of strings) and the rule its value
    (each item, for a list) must meet, in the words the error uses. ``optional``: may be unset
    (an empty string)."""

    kind: type
    rule: Callable[[Any], bool] = lambda _: True
    need: str = ""
    optional: bool = False


def _integer(low: int, high: int | None = None) -> Setting:
    if high is not None:
        return Setting(int, lambda v: low <= v <= high, f"from {low} to {high}")
    need = {0: "zero or more", 1: "positive"}.get(low, f"at least {low}")
    return Setting(int, lambda v: v >= low, need)


def _http_url(value: str, *, path_allowed: bool) -> bool:
    try:
        parts = urlsplit(value)
        _ = parts.port  # a port that is not one raises
    except ValueError:
        return False
    no_path = path_allowed or not parts.path
    return parts.scheme in ("http", "https") and bool(parts.hostname) and no_path


def _host_port(value: str) -> bool:
    host, sep, port = value.rpartition(":")
    return bool(sep and host) and port.isascii() and port.isdigit() and 1 <= int(port) <= 65535


def _a_name(value: str) -> bool:
    return bool(value) and not any(c.isspace() for c in value)


_PAYEE = re.compile(r"0[23][0-9a-f]{64}")  # a node id: a compressed public key, in hex
_DATABASE_SCHEMES = ("sqlite:///", "postgresql://", "postgres://")

PORT = _integer(1, 65535)
POSITIVE = _integer(1)
ZERO_OR_MORE = _integer(0)
AMOUNT_MSAT = _integer(1, MAX_AMOUNT_MSAT)
PPM = _integer(0, PPM_MAX)
SECONDS = Setting(float, lambda v: v > 0, "positive")
FLAG = Setting(bool)
HOST = Setting(str, _a_name, "a host name or address")
FILE = Setting(Path, optional=True)

# Every setting, by section ("" is the top level of the file): tests/unit/test_config_validation.py
# checks that each field of each dataclass is here.
SETTINGS: dict[str, dict[str, Setting]] = {
    "": {
        "data_dir": Setting(Path),
        "database_url": Setting(
            str,
            lambda v: v == "" or v.startswith(_DATABASE_SCHEMES),
            "empty (SQLite in the data directory), sqlite:///PATH or postgresql://...",
        ),
        "host": HOST,
        "port": PORT,
        "admin_host": HOST,
        "admin_port": _integer(0, 65535),  # 0: no admin listener
        "public_url": Setting(
            str,
            lambda v: v == "" or _http_url(v, path_allowed=False),
            "empty or an http(s) URL with no path (Lightning Addresses live at the host's root)",
        ),
        "receive_window_ms": POSITIVE,
        "node_backend": Setting(str, lambda v: v in ("simnet", "lnd"), "simnet or lnd"),
        "lnurl_allow_private_hosts": FLAG,
        "reconcile_interval_s": SECONDS,
        "reconcile_tolerance_msat": ZERO_OR_MORE,
        "inbound_floor_msat": ZERO_OR_MORE,
        "max_body_bytes": POSITIVE,
        "event_streams_per_user": POSITIVE,
        "lnurl_callbacks_per_minute": POSITIVE,
        "log_json": FLAG,
    },
    "lnd": {
        "rest_url": Setting(str, lambda v: _http_url(v, path_allowed=True), "an http(s) URL"),
        "tls_cert": FILE,
        "invoice_macaroon": Setting(Path),
        "spending_macaroon": FILE,
        "signer_rpc_host": Setting(str, _host_port, "host:port", optional=True),
        "signer_tls_cert": FILE,
    },
    "limits": {
        "transfer_max_msat": AMOUNT_MSAT,
        "deposit_min_msat": AMOUNT_MSAT,
        "deposit_max_msat": AMOUNT_MSAT,
        "invoice_expiry_s": _integer(1, MAX_INVOICE_EXPIRY_S),
        "allow_amountless_deposits": FLAG,
    },
    "withdrawals": {
        "min_msat": AMOUNT_MSAT,
        "max_msat": AMOUNT_MSAT,
        "user_daily_max_msat": POSITIVE,
        "global_hourly_max_msat": POSITIVE,
        "review_above_msat": ZERO_OR_MORE,
        "fee_base_msat": ZERO_OR_MORE,
        "fee_ppm": PPM,
        "routing_reserve_ppm": PPM,
        "routing_reserve_min_msat": ZERO_OR_MORE,
        "invoice_min_remaining_s": ZERO_OR_MORE,
        "user_sending_max_count": POSITIVE,
        "user_sending_max_msat": POSITIVE,
        "payment_timeout_s": POSITIVE,
        "blocked_payees": Setting(
            frozenset,
            lambda v: _PAYEE.fullmatch(v) is not None,
            "node ids (66 hex digits, starting 02 or 03)",
        ),
    },
    "treasury": {
        "hot_onchain_cap_sat": ZERO_OR_MORE,
        "hot_channel_target_sat": ZERO_OR_MORE,
        "sweep_sat_per_vbyte": _integer(1, MAX_SAT_PER_VBYTE),
        "sweep_interval_s": SECONDS,
        "sweep_min_sat": _integer(DUST_LIMIT_SAT),
        "sweep_fee_reserve_vbytes": POSITIVE,
    },
    "pay": {
        "merchant_fee_ppm": PPM,
        "order_expiry_default_s": _integer(ORDER_EXPIRY_MIN_S, MAX_INVOICE_EXPIRY_S),
        "order_expiry_max_s": _integer(ORDER_EXPIRY_MIN_S, MAX_INVOICE_EXPIRY_S),
        "webhook_allow_private_hosts": FLAG,
        "webhook_timeout_s": SECONDS,
        "webhook_max_response_bytes": POSITIVE,
    },
    "web": {
        "withdrawal_totp_above_msat": ZERO_OR_MORE,
        "session_idle_s": POSITIVE,
        "session_max_s": POSITIVE,
        "login_failures_max": POSITIVE,
        "login_lock_s": POSITIVE,
    },
}
SECTIONS: dict[str, type] = {
    "lnd": LndConfig,
    "limits": Limits,
    "withdrawals": WithdrawalPolicy,
    "treasury": TreasuryPolicy,
    "pay": PayPolicy,
    "web": WebPolicy,
}
_KIND_WORDS = {
    int: "an integer",
    float: "a finite number",
    bool: "true or false",
    str: "a string",
    Path: "a path",
    frozenset: "a list of strings",
}


def _as_kind(kind: type, value: Any) -> tuple[bool, Any]:
    """(True, ``value`` as ``kind``), or (False, None) when it is not one."""
    if kind is bool or kind is str:
        return isinstance(value, kind), value
    if kind is int:
        return isinstance(value, int) and not isinstance(value, bool), value
    if kind is float:
        number = isinstance(value, int | float) and not isinstance(value, bool)
        return (True, float(value)) if number and math.isfinite(value) else (False, None)
    if kind is Path:
        if isinstance(value, str) and value:
            return True, Path(value)
        return isinstance(value, Path), value
    if kind is frozenset:
        items = isinstance(value, list | tuple | set | frozenset)
        if items and all(isinstance(item, str) for item in value):
            return True, frozenset(item.lower() for item in value)
        return False, None
    raise TypeError(f"no such kind of setting: {kind}")


def _name(section: str, key: str) -> str:
    return f"[{section}] {key}" if section else key


# -- where each value came from --------------------------------------------------------------------


class _Sources:
    """The values the sources give, later ones winning, each with where it came from."""

    def __init__(self) -> None:
        self.values: dict[tuple[str, str], Any] = {}
        self.origins: dict[tuple[str, str], tuple[str, str]] = {}  # (name as written, source)
        self.sections: dict[str, str] = {}  # a section given at all, and where

    def set(self, section: str, key: str, value: Any, source: str, name: str = "") -> None:
        self.values[section, key] = value
        self.origins[section, key] = (name or _name(section, key), source)
        if section:
            self.sections.setdefault(section, source)

    def name(self, section: str, key: str) -> str:
        return self.origins.get((section, key), (_name(section, key), ""))[0]

    def where(self, section: str, key: str) -> str:
        default = self.sections.get(section, "the default")
        return self.origins.get((section, key), ("", default))[1]

    def read_file(self, path: Path) -> None:
        try:
            with path.open("rb") as fh:
                raw = tomllib.load(fh)
        except OSError as exc:
            raise ConfigError(f"cannot read the config file {path}: {exc.strerror}") from exc
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"the config file {path} is not valid TOML: {exc}") from exc
        source = f"in {path}"
        unknown: list[str] = []
        for key, value in raw.items():
            if key == "node" and isinstance(value, dict):  # [node] backend is node_backend
                unknown += [f"[node] {inner}" for inner in value if inner != "backend"]
                if "backend" in value:
                    self.set("", "node_backend", value["backend"], source, "[node] backend")
            elif key in SECTIONS:
                if not isinstance(value, dict):
                    raise ConfigError(f"{key} must be a table, [{key}] ({source})")
                self.sections.setdefault(key, source)
                unknown += [_name(key, inner) for inner in value if inner not in SETTINGS[key]]
                for inner, item in value.items():
                    if inner in SETTINGS[key]:
                        self.set(key, inner, _from(path.parent, SETTINGS[key][inner], item), source)
            elif key in SETTINGS[""]:
                self.set("", key, _from(path.parent, SETTINGS[""][key], value), source)
            else:
                unknown.append(f"[{key}]" if isinstance(value, dict) else key)
        if unknown:
            raise ConfigError(f"unknown settings in {path}: {', '.join(sorted(unknown))}")

    def set_given(self, key: str, value: Any, source: str) -> None:
        """A value given to ``load_config``: a setting, or a whole section as its dataclass."""
        if key in SECTIONS and isinstance(value, SECTIONS[key]):
            for name in SETTINGS[key]:
                self.set(key, name, getattr(value, name), source)
        elif key in SETTINGS[""]:
            self.set("", key, value, source)
        else:
            raise ConfigError(f"unknown setting {key} ({source})")


def _from(base: Path, setting: Setting, value: Any) -> Any:
    """A path in the file is relative to the file."""
    if setting.kind is Path and isinstance(value, str) and value:
        return base / value
    return value


# -- checking and building -------------------------------------------------------------------------


def _defaults() -> dict[str, dict[str, Any]]:
    """Every setting's default; a setting of ``[lnd]`` without one is required there."""
    cfg = Config()
    defaults = {"": {key: getattr(cfg, key) for key in SETTINGS[""]}}
    defaults["lnd"] = dict.fromkeys(("tls_cert", "spending_macaroon", "signer_rpc_host"))
    defaults["lnd"]["signer_tls_cert"] = None
    for section in ("limits", "withdrawals", "treasury", "pay", "web"):
        policy = getattr(cfg, section)
        defaults[section] = {f.name: getattr(policy, f.name) for f in fields(policy)}
    return defaults


def _check(setting: Setting, name: str, value: Any, where: str) -> tuple[Any, str]:
    """``value`` as its setting's kind, or what is wrong with it."""
    if setting.optional and value in (None, ""):
        return None, ""
    ok, converted = _as_kind(setting.kind, value)
    if not ok:
        return None, f"{name} must be {_KIND_WORDS[setting.kind]}, not {value!r} ({where})"
    if setting.kind is frozenset:  # the rule is each item's: name the first that breaks it
        broken = sorted(item for item in converted if not setting.rule(item))
        if broken:
            return None, f"{name} must be {setting.need}, not {broken[0]!r} ({where})"
    elif not setting.rule(converted):
        return None, f"{name} must be {setting.need}, not {value!r} ({where})"
    return converted, ""


def _checked(sources: _Sources) -> tuple[dict[str, dict[str, Any]], list[str]]:
    """Every given section's values, each converted to its kind, and what is wrong with them."""
    merged = _defaults()
    problems: list[str] = []
    for section, settings in SETTINGS.items():
        if section == "lnd" and section not in sources.sections:
            continue
        for key, setting in settings.items():
            name, where = sources.name(section, key), sources.where(section, key)
            if (section, key) in sources.values:
                value = sources.values[section, key]
            elif key in merged[section]:
                value = merged[section][key]
            else:
                problems.append(f"{name} is required ({where})")
                continue
            merged[section][key], problem = _check(setting, name, value, where)
            if problem:
                problems.append(problem)
    return merged, problems


def _contradictions(sources: _Sources, merged: dict[str, dict[str, Any]]) -> list[str]:
    """Settings each fine alone that cannot work together."""
    problems: list[str] = []

    def both(section: str, first: str, second: str) -> str:
        where = {sources.where(section, first), sources.where(section, second)}
        return "; ".join(sorted(where))

    for section, low, high in (
        ("limits", "deposit_min_msat", "deposit_max_msat"),
        ("withdrawals", "min_msat", "max_msat"),
        ("pay", "order_expiry_default_s", "order_expiry_max_s"),
    ):
        if merged[section][low] > merged[section][high]:
            problems.append(
                f"{sources.name(section, low)} ({merged[section][low]:,}) must not be above "
                f"{sources.name(section, high)} ({merged[section][high]:,}) "
                f"({both(section, low, high)})"
            )
    top = merged[""]
    if top["node_backend"] == "lnd" and "lnd" not in sources.sections:
        problems.append(
            f"{sources.name('', 'node_backend')} lnd needs an [lnd] section with rest_url and "
            f"invoice_macaroon ({sources.where('', 'node_backend')})"
        )
    if top["admin_port"] and (top["admin_host"], top["admin_port"]) == (top["host"], top["port"]):
        problems.append(
            f"admin_port must differ from port on the same host, not both {top['port']} "
            f"({both('', 'admin_port', 'port')})"
        )
    if "lnd" in sources.sections:
        lnd = merged["lnd"]
        for given, needed in (
            ("signer_rpc_host", "signer_tls_cert"),
            ("signer_tls_cert", "signer_rpc_host"),
        ):
            if lnd[given] is not None and lnd[needed] is None:
                problems.append(
                    f"[lnd] {given} needs [lnd] {needed}: the remote signer is checked over "
                    f"TLS pinned to its cert ({sources.where('lnd', given)})"
                )
    return problems


def _build(sources: _Sources) -> Config:
    merged, problems = _checked(sources)
    if not problems:  # only values of the right kind can be compared
        problems = _contradictions(sources, merged)
    if problems:
        raise ConfigError("; ".join(problems))
    return Config(
        **merged[""],
        lnd=LndConfig(**merged["lnd"]) if "lnd" in sources.sections else None,
        limits=Limits(**merged["limits"]),
        withdrawals=WithdrawalPolicy(**merged["withdrawals"]),
        treasury=TreasuryPolicy(**merged["treasury"]),
        pay=PayPolicy(**merged["pay"]),
        web=WebPolicy(**merged["web"]),
    )


def load_config(
    *,
    data_dir: Path | None = None,
    config_file: Path | None = None,
    env: dict[str, str] | None = None,
    **overrides: Any,
) -> Config:
    """The configuration from its sources, every setting checked: a ``ConfigError`` names each
    setting that cannot work, and where its value came from."""
    env = dict(os.environ) if env is None else env
    sources = _Sources()
    if config_file is not None:
        sources.read_file(config_file)
    if env.get("LNGATE_DATA_DIR"):
        sources.set("", "data_dir", Path(env["LNGATE_DATA_DIR"]), "from LNGATE_DATA_DIR")
    if env.get("LNGATE_DATABASE_URL"):
        sources.set("", "database_url", env["LNGATE_DATABASE_URL"], "from LNGATE_DATABASE_URL")
    if data_dir is not None:
        sources.set("", "data_dir", data_dir, "from --data-dir")
    for key, value in overrides.items():
        if value is not None:
            sources.set_given(key, value, f"from --{key.replace('_', '-')}")
    return _build(sources)
