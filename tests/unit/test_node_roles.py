"""Least privilege by process role: only the roles that move or read the node's funds get the
spending credential; everything a public host runs gets the invoice-only one."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from lngate.bootstrap import NodeRole, open_node
from lngate.config import Config, LndConfig
from lngate.lightning.lnd import LndNode

INVOICE_ONLY = {NodeRole.PUBLIC_API, NodeRole.INVOICE_WATCHER, NodeRole.OPERATOR_TOOL}
SPENDING = {NodeRole.PAYMENT_WORKER, NodeRole.TREASURY, NodeRole.RECONCILER}


def test_every_role_is_either_invoice_only_or_spending() -> None:
    assert set(NodeRole) == INVOICE_ONLY | SPENDING
    assert {role for role in NodeRole if role.spends} == SPENDING


@pytest.fixture
def opened(monkeypatch: pytest.MonkeyPatch) -> list[Path]:
    """The macaroon each ``LndNode.from_files`` call was given (no LND needed to choose it)."""
    macaroons: list[Path] = []

    def from_files(rest_url: str, tls_cert: Path | None, macaroon: Path, **_: Any) -> str:
        macaroons.append(macaroon)
        return "node"

    monkeypatch.setattr(LndNode, "from_files", staticmethod(from_files))
    return macaroons


def lnd_config(tmp_path: Path, *, spending: Path | None) -> Config:
    lnd = LndConfig(
        rest_url="https://127.0.0.1:8080",
        tls_cert=None,
        invoice_macaroon=tmp_path / "invoice.macaroon",
        spending_macaroon=spending,
    )
    return Config(data_dir=tmp_path, node_backend="lnd", lnd=lnd, log_json=False)


@pytest.mark.parametrize("role", sorted(NodeRole, key=lambda r: r.value))
def test_each_role_gets_its_credential(role: NodeRole, tmp_path: Path, opened: list[Path]) -> None:
    config = lnd_config(tmp_path, spending=tmp_path / "spending.macaroon")
    open_node(config, role)
    expected = "spending.macaroon" if role in SPENDING else "invoice.macaroon"
    assert [p.name for p in opened] == [expected]


def test_a_spending_role_without_the_spending_macaroon_is_refused(
    tmp_path: Path, opened: list[Path]
) -> None:
    config = lnd_config(tmp_path, spending=None)
    with pytest.raises(ValueError, match="spending_macaroon is required for the payment worker"):
        open_node(config, NodeRole.PAYMENT_WORKER)
    open_node(config, NodeRole.PUBLIC_API)  # the public API never needs it
    assert [p.name for p in opened] == ["invoice.macaroon"]
