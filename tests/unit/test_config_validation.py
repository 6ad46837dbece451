"""The configuration is checked when it is loaded: a setting that cannot work is a ConfigError
whose one-line message names the setting and where its value came from, before anything starts.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest

from lngate.config import SECTIONS, SETTINGS, Config, ConfigError, LndConfig, load_config
from lngate.domain.treasury import TreasuryPolicy
from lngate.domain.withdrawals import WithdrawalPolicy

NODE_ID = "02" + "ab" * 32
LND = '[lnd]\nrest_url = "https://127.0.0.1:8080"\ninvoice_macaroon = "invoice.macaroon"\n'

# (what the file says, what the message must say). Every message names the setting as the file
# spells it and the file it is in.
BAD_FILES = [
    # wrong kinds
    ('port = "8000"', r"^port must be an integer, not '8000' \(in .*lngate\.toml\)$"),
    ("port = true", r"^port must be an integer, not True"),
    ("port = 8000.0", r"^port must be an integer, not 8000\.0"),
    ('log_json = "yes"', r"^log_json must be true or false, not 'yes'"),
    ("host = 127", r"^host must be a string, not 127"),
    ("[limits]\ndeposit_min_msat = false", r"^\[limits\] deposit_min_msat must be an integer"),
    ('[treasury]\nsweep_interval_s = "1m"', r"^\[treasury\] sweep_interval_s must be a finite"),
    ("[treasury]\nsweep_interval_s = inf", r"^\[treasury\] sweep_interval_s must be a finite"),
    ("[treasury]\nsweep_interval_s = nan", r"^\[treasury\] sweep_interval_s must be a finite"),
    ('[withdrawals]\nblocked_payees = "02ab"', r"^\[withdrawals\] blocked_payees must be a list"),
    ('data_dir = ""', r"^data_dir must be a path, not ''"),
    ("limits = 5", r"^limits must be a table, \[limits\]"),
    # out of range
    ("port = 0", r"^port must be from 1 to 65535, not 0"),
    ("port = 65536", r"^port must be from 1 to 65535, not 65536"),
    ("admin_port = -1", r"^admin_port must be from 0 to 65535, not -1"),
    ('host = ""', r"^host must be a host name or address, not ''"),
    ("receive_window_ms = 0", r"^receive_window_ms must be positive, not 0"),
    ("reconcile_interval_s = -1.5", r"^reconcile_interval_s must be positive, not -1\.5"),
    ("reconcile_tolerance_msat = -1", r"^reconcile_tolerance_msat must be zero or more"),
    ("max_body_bytes = 0", r"^max_body_bytes must be positive"),
    ("event_streams_per_user = 0", r"^event_streams_per_user must be positive"),
    ("lnurl_callbacks_per_minute = -5", r"^lnurl_callbacks_per_minute must be positive"),
    ('database_url = "mysql://db/lngate"', r"^database_url must be empty \(SQLite"),
    ('public_url = "ftp://pay.example.com"', r"^public_url must be empty or an http\(s\) URL"),
    ('public_url = "https://pay.example.com/"', r"^public_url must be .* with no path"),
    ("[limits]\ntransfer_max_msat = 0", r"^\[limits\] transfer_max_msat must be from 1 to "),
    ("[limits]\ninvoice_expiry_s = 0", r"^\[limits\] invoice_expiry_s must be from 1 to "),
    ("[withdrawals]\nmin_msat = 0", r"^\[withdrawals\] min_msat must be from 1 to "),
    ("[withdrawals]\nfee_ppm = -1", r"^\[withdrawals\] fee_ppm must be from 0 to 1000000"),
    ("[withdrawals]\nuser_sending_max_count = 0", r"^\[withdrawals\] user_sending_max_count"),
    ("[withdrawals]\npayment_timeout_s = 0", r"^\[withdrawals\] payment_timeout_s must be pos"),
    ('[withdrawals]\nblocked_payees = ["02ab"]', r"blocked_payees must be node ids .*'02ab'"),
    ("[treasury]\nhot_onchain_cap_sat = -1", r"^\[treasury\] hot_onchain_cap_sat must be zero"),
    ("[treasury]\nsweep_sat_per_vbyte = 0", r"^\[treasury\] sweep_sat_per_vbyte must be from 1"),
    ("[treasury]\nsweep_min_sat = 100", r"^\[treasury\] sweep_min_sat must be at least 546"),
    ("[treasury]\nsweep_fee_reserve_vbytes = 0", r"^\[treasury\] sweep_fee_reserve_vbytes"),
    # one of a few
    ('[node]\nbackend = "cln"', r"^\[node\] backend must be simnet or lnd, not 'cln'"),
    ('node_backend = "LND"', r"^node_backend must be simnet or lnd, not 'LND'"),
    # unknown names
    ("prot = 8000", r"^unknown settings in .*lngate\.toml: prot$"),
    ("[limits]\ndeposit_max = 1", r"^unknown settings in .*: \[limits\] deposit_max$"),
    ("[node]\nbackend = 'lnd'\nhost = 'x'", r"^unknown settings in .*: \[node\] host$"),
    ("[ldn]\nrest_url = 'x'", r"^unknown settings in .*: \[ldn\]$"),
    # settings that contradict each other
    (
        "[limits]\ndeposit_min_msat = 5000\ndeposit_max_msat = 1000",
        r"^\[limits\] deposit_min_msat \(5,000\) must not be above \[limits\] deposit_max_msat",
    ),
    ("[withdrawals]\nmin_msat = 2000000000", r"^\[withdrawals\] min_msat .* must not be above"),
    ("admin_port = 8000", r"^admin_port must differ from port on the same host"),
    ('[node]\nbackend = "lnd"', r"^\[node\] backend lnd needs an \[lnd\] section"),
    # [lnd]
    ("[lnd]\ninvoice_macaroon = 'm'", r"^\[lnd\] rest_url is required \(in .*lngate\.toml\)$"),
    ("[lnd]\nrest_url = 'https://h:8080'", r"^\[lnd\] invoice_macaroon is required"),
    (LND.replace("https://127.0.0.1:8080", "127.0.0.1:8080"), r"^\[lnd\] rest_url must be an"),
    (LND.replace("https://127.0.0.1:8080", "https://h:99999"), r"^\[lnd\] rest_url must be an"),
    (LND + "tls_cert = 5", r"^\[lnd\] tls_cert must be a path, not 5"),
    (
        LND + 'signer_rpc_host = "10.0.0.2:10009"',
        r"^\[lnd\] signer_rpc_host needs \[lnd\] signer_tls_cert",
    ),
    (LND + 'signer_tls_cert = "signer.cert"', r"^\[lnd\] signer_tls_cert needs \[lnd\] signer_rpc"),
    (
        LND + 'signer_rpc_host = "10.0.0.2"\nsigner_tls_cert = "signer.cert"',
        r"^\[lnd\] signer_rpc_host must be host:port, not '10\.0\.0\.2'",
    ),
    (
        LND + 'signer_rpc_host = "signer:0"\nsigner_tls_cert = "signer.cert"',
        r"^\[lnd\] signer_rpc_host must be host:port",
    ),
]


def _load(tmp_path: Path, text: str) -> Config:
    path = tmp_path / "lngate.toml"
    path.write_text(text + "\n")
    return load_config(config_file=path, env={})


@pytest.mark.parametrize(("text", "message"), BAD_FILES, ids=[t for t, _ in BAD_FILES])
def test_a_bad_setting_in_the_file_is_named_with_the_file(
    tmp_path: Path, text: str, message: str
) -> None:
    with pytest.raises(ConfigError, match=message) as caught:
        _load(tmp_path, text)
    assert "\n" not in str(caught.value)  # one line: the CLI prints it as it is


BAD_ELSEWHERE = [
    ({"LNGATE_DATABASE_URL": "mysql://db"}, {}, r"^database_url .*\(from LNGATE_DATABASE_URL\)$"),
    ({}, {"port": 0}, r"^port must be from 1 to 65535, not 0 \(from --port\)$"),
    ({}, {"admin_port": 70000}, r"^admin_port must be .* \(from --admin-port\)$"),
    ({}, {"host": " "}, r"^host must be a host name or address, not ' ' \(from --host\)$"),
    ({}, {"prot": 1}, r"^unknown setting prot \(from --prot\)$"),
]


@pytest.mark.parametrize(("env", "flags", "message"), BAD_ELSEWHERE)
def test_a_bad_setting_from_the_environment_or_a_flag_names_that(
    env: dict[str, str], flags: dict[str, Any], message: str
) -> None:
    with pytest.raises(ConfigError, match=message):
        load_config(env=env, **flags)


def test_every_problem_is_reported_at_once_on_one_line(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        _load(tmp_path, 'port = 0\nlog_json = "no"\n[treasury]\nsweep_min_sat = 1')
    assert str(caught.value).count("; ") == 2 and "\n" not in str(caught.value)


def test_a_file_that_cannot_be_read_or_parsed_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"^cannot read the config file .*missing\.toml"):
        load_config(config_file=tmp_path / "missing.toml", env={})
    with pytest.raises(ConfigError, match=r"lngate\.toml is not valid TOML"):
        _load(tmp_path, "port = [")


def test_a_config_error_is_a_value_error() -> None:
    assert issubclass(ConfigError, ValueError)


def test_a_good_config_loads_with_every_section(tmp_path: Path) -> None:
    text = f"""
        data_dir = "data"
        database_url = "postgresql://lngate@db.internal/lngate"
        host = "0.0.0.0"
        port = 8443
        admin_port = 0
        public_url = "https://pay.example.com"
        reconcile_interval_s = 10
        log_json = false

        [node]
        backend = "lnd"

        [lnd]
        rest_url = "https://10.0.0.1:8080"
        tls_cert = "tls.cert"
        invoice_macaroon = "/etc/lngate/invoice.macaroon"
        spending_macaroon = ""
        signer_rpc_host = "10.0.0.2:10009"
        signer_tls_cert = "signer.cert"

        [limits]
        deposit_min_msat = 1000
        deposit_max_msat = 1000

        [withdrawals]
        min_msat = 5000
        max_msat = 5000000
        fee_ppm = 1000
        blocked_payees = ["{NODE_ID.upper()}"]

        [treasury]
        hot_onchain_cap_sat = 0
        sweep_min_sat = 546
    """
    cfg = _load(tmp_path, "\n".join(line.strip() for line in text.splitlines()))
    assert cfg.data_dir == tmp_path / "data"  # relative to the file
    assert (cfg.host, cfg.port, cfg.admin_port, cfg.log_json) == ("0.0.0.0", 8443, 0, False)
    assert cfg.reconcile_interval_s == 10.0 and isinstance(cfg.reconcile_interval_s, float)
    assert cfg.lnd == LndConfig(
        rest_url="https://10.0.0.1:8080",
        tls_cert=tmp_path / "tls.cert",
        invoice_macaroon=Path("/etc/lngate/invoice.macaroon"),
        spending_macaroon=None,  # an empty path is no path
        signer_rpc_host="10.0.0.2:10009",
        signer_tls_cert=tmp_path / "signer.cert",
    )
    assert cfg.limits.deposit_min_msat == cfg.limits.deposit_max_msat == 1000
    assert cfg.withdrawals == WithdrawalPolicy(
        min_msat=5000, max_msat=5_000_000, fee_ppm=1000, blocked_payees=frozenset({NODE_ID})
    )
    assert cfg.treasury == TreasuryPolicy(hot_onchain_cap_sat=0, sweep_min_sat=546)


def test_the_defaults_load_and_later_sources_win(tmp_path: Path) -> None:
    assert load_config(env={}) == Config()
    path = tmp_path / "lngate.toml"
    path.write_text('database_url = "sqlite:///file.sqlite3"\nport = 9000\n')
    env = {"LNGATE_DATABASE_URL": "postgresql://env/lngate", "LNGATE_DATA_DIR": "/srv/lngate"}
    cfg = load_config(config_file=path, env=env, port=9001)
    assert (cfg.database_url, cfg.data_dir, cfg.port) == (
        env["LNGATE_DATABASE_URL"],
        Path(env["LNGATE_DATA_DIR"]),
        9001,
    )


def test_a_section_given_whole_is_checked_too() -> None:
    lnd = LndConfig("https://h:8080", None, Path("m"), None, signer_rpc_host="h:1")
    with pytest.raises(ConfigError, match=r"^\[lnd\] signer_rpc_host needs \[lnd\] signer_tls"):
        load_config(env={}, lnd=lnd)


def _field_names(cls: type) -> set[str]:
    return {f.name for f in dataclasses.fields(cls)}


def test_every_setting_has_a_rule() -> None:
    assert set(SETTINGS[""]) == _field_names(Config) - set(SECTIONS)
    for section, cls in SECTIONS.items():
        assert set(SETTINGS[section]) == _field_names(cls), section
