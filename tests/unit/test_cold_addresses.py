"""Reading cold-storage imports: addresses checked for checksum and network, watch-only
derivation from xpubs and descriptors, and private keys refused without being echoed."""

from __future__ import annotations

import re

import pytest
from embit import bech32, bip32, bip39, script  # type: ignore[import-untyped]
from embit.descriptor.checksum import add_checksum  # type: ignore[import-untyped]
from embit.networks import NETWORKS  # type: ignore[import-untyped]

from lngate.domain.errors import ColdImportRefused, PrivateKeyRefused
from lngate.lightning.node import Network
from lngate.services.cold_addresses import parse_cold_import

# BIP 84 test vectors (https://github.com/bitcoin/bips/blob/master/bip-0084.mediawiki,
# "Test vectors"): the mnemonic, the account 0 extended public key m/84'/0'/0' and its first
# two receive addresses m/84'/0'/0'/0/0 and m/84'/0'/0'/0/1.
BIP84_MNEMONIC = " ".join(["abandon"] * 11 + ["about"])
BIP84_ZPUB = (
    "zpub6rFR7y4Q2AijBEqTUquhVz398htDFrtymD9xYYfG1m4wAcvPhXNfE3EfH1r1"
    "ADqtfSdVCToUG868RvUUkgDKf31mGDtKsAYz2oz2AGutZYs"
)
BIP84_RECEIVE = (
    "bc1qcr8te4kr609gcawutmrza0j4xv80jy8z306fyu",
    "bc1qnjg0jd8228aq7egyzacy8cys3knf9xvrerkf9g",
)
# BIP 84 publishes mainnet only; the same mnemonic's first testnet receive address
# (m/84'/1'/0'/0/0), as wallets' test suites use it, checked by derivation below.
BIP84_TESTNET_RECEIVE_0 = "tb1q6rz28mcfaxtmd6v789l9rrlrusdprr9pqcpvkl"


def _root() -> bip32.HDKey:
    return bip32.HDKey.from_seed(bip39.mnemonic_to_seed(BIP84_MNEMONIC))


def _addresses(text: str, network: Network, count: int = 2) -> list[str]:
    return [a.address for a in parse_cold_import(text, network, count=count).addresses]


def _regtest_address(index: int) -> str:
    key = _root().derive(f"m/84h/1h/0h/0/{index}")
    address: str = script.p2wpkh(key.key).address(NETWORKS["regtest"])
    return address


# -- derivation ------------------------------------------------------------------------------


def test_the_bip84_zpub_is_what_the_mnemonic_derives() -> None:
    account = _root().derive("m/84h/0h/0h").to_public()
    assert account.to_string(version=NETWORKS["main"]["zpub"]) == BIP84_ZPUB
    derived = [script.p2wpkh(account.derive([0, i]).key).address() for i in range(2)]
    assert tuple(derived) == BIP84_RECEIVE


def test_a_bare_zpub_derives_the_bip84_receive_addresses() -> None:
    assert tuple(_addresses(BIP84_ZPUB, Network.MAINNET)) == BIP84_RECEIVE


def test_a_descriptor_with_key_origin_derives_the_same_addresses() -> None:
    root = _root()
    xpub = root.derive("m/84h/0h/0h").to_public().to_string()
    fingerprint = root.my_fingerprint.hex()
    descriptor = f"wpkh([{fingerprint}/84h/0h/0h]{xpub}/0/*)"
    assert tuple(_addresses(descriptor, Network.MAINNET)) == BIP84_RECEIVE
    with_checksum = add_checksum(descriptor)
    assert tuple(_addresses(f"{with_checksum}  # cold wallet", Network.MAINNET)) == BIP84_RECEIVE
    multipath = f"wpkh([{fingerprint}/84h/0h/0h]{xpub}/<0;1>/*)"
    assert tuple(_addresses(multipath, Network.MAINNET)) == BIP84_RECEIVE


def test_a_vpub_derives_testnet_and_regtest_addresses() -> None:
    account = _root().derive("m/84h/1h/0h").to_public()
    vpub = account.to_string(version=NETWORKS["test"]["zpub"])
    tpub = account.to_string(version=NETWORKS["test"]["xpub"])
    assert _addresses(vpub, Network.TESTNET, 1) == [BIP84_TESTNET_RECEIVE_0]
    assert _addresses(vpub, Network.SIGNET, 1) == [BIP84_TESTNET_RECEIVE_0]
    regtest = [_regtest_address(i) for i in range(3)]
    assert _addresses(tpub, Network.REGTEST, 3) == regtest
    assert _addresses(f"wpkh({tpub}/0/*)", Network.SIMNET, 3) == regtest


def test_count_decides_how_many_are_derived() -> None:
    parsed = parse_cold_import(BIP84_ZPUB, Network.MAINNET, count=25)
    assert [a.source_index for a in parsed.addresses] == list(range(25))
    assert len({a.address for a in parsed.addresses}) == 25
    for bad in (0, 10_001):
        with pytest.raises(ColdImportRefused):
            parse_cold_import(BIP84_ZPUB, Network.MAINNET, count=bad)


def test_a_key_of_the_wrong_network_is_refused() -> None:
    with pytest.raises(ColdImportRefused, match="line 1: the key is not for regtest"):
        parse_cold_import(BIP84_ZPUB, Network.REGTEST)
    tpub = _root().derive("m/84h/1h/0h").to_public().to_string(version=NETWORKS["test"]["xpub"])
    with pytest.raises(ColdImportRefused, match="not for mainnet"):
        parse_cold_import(f"wpkh({tpub}/0/*)", Network.MAINNET)


def test_a_descriptor_with_a_bad_checksum_or_no_wildcard_is_refused() -> None:
    xpub = _root().derive("m/84h/0h/0h").to_public().to_string()
    good = add_checksum(f"wpkh({xpub}/0/*)")
    bad = good[:-1] + ("q" if good[-1] != "q" else "p")
    with pytest.raises(ColdImportRefused, match="checksum"):
        parse_cold_import(bad, Network.MAINNET)
    with pytest.raises(ColdImportRefused, match="must end in"):
        parse_cold_import(f"wpkh({xpub}/0/5)", Network.MAINNET)


# -- private keys ----------------------------------------------------------------------------


@pytest.mark.parametrize("network", [Network.MAINNET, Network.REGTEST])
def test_private_keys_are_refused_and_not_echoed(network: Network) -> None:
    root = _root()
    net = NETWORKS["main" if network is Network.MAINNET else "regtest"]
    xprv = root.derive("m/84h/0h/0h").to_string(version=net["xprv"])
    zprv = root.derive("m/84h/0h/0h").to_string(version=net["zprv"])
    wif = root.derive("m/84h/0h/0h/0/0").key.wif(net)
    secrets = [
        xprv,
        zprv,
        f"wpkh({xprv}/0/*)",
        f"wpkh([{root.my_fingerprint.hex()}/84h/0h/0h]{xprv}/0/*)",
        f"# cold\n{_regtest_address(0)}\n{wif}\n",
    ]
    for text in secrets:
        with pytest.raises(PrivateKeyRefused) as refused:
            parse_cold_import(text, network)
        assert "prv" not in refused.value.message and wif not in refused.value.message
        assert "line" in refused.value.message


# -- address lists ---------------------------------------------------------------------------


def test_an_address_list_with_comments_and_blank_lines() -> None:
    a0, a1, a2 = (_regtest_address(i) for i in range(3))
    text = f"# exported 2026-11-20\n\n{a0}\n  {a1.upper()}   # upper case is valid bech32\n{a2}\n"
    parsed = parse_cold_import(text, Network.REGTEST, source_name="cold.txt")
    assert [a.address for a in parsed.addresses] == [a0, a1, a2]
    assert [a.source_index for a in parsed.addresses] == [3, 4, 5]  # line numbers
    assert parsed.source == "list:cold.txt"


def _flip(address: str, position: int) -> str:
    chars = list(address)
    chars[position] = "q" if chars[position] != "q" else "p"
    return "".join(chars)


@pytest.mark.parametrize(
    ("bad", "why"),
    [
        (_flip(_regtest_address(1), -3), "bad checksum"),
        ("bc1qcr8te4kr609gcawutmrza0j4xv80jy8z306fyu", "a mainnet address, the node is on regtest"),
        ("tb1q6rz28mcfaxtmd6v789l9rrlrusdprr9pqcpvkl", "a testnet/signet address"),
        ("1BvBMSEYstWetqTFn5Au4m4GFg7xJaNVN2", "regtest takes bech32"),
        ("bcrt1qW508d6qejxtdg4y5r3zarvary0c5xw7kygt080", "mixed case"),
        ("not-an-address", "bad checksum or encoding"),
    ],
)
def test_a_bad_line_refuses_the_import_naming_it(bad: str, why: str) -> None:
    text = f"{_regtest_address(0)}\n# a comment\n{bad}\n{_regtest_address(2)}\n"
    with pytest.raises(ColdImportRefused, match=f"^line 3: .*{re.escape(why)}"):
        parse_cold_import(text, Network.REGTEST)


def test_base58_addresses_are_checked_for_network_and_checksum() -> None:
    mainnet = "1BvBMSEYstWetqTFn5Au4m4GFg7xJaNVN2"  # a P2PKH address (Bitcoin wiki example)
    assert _addresses(mainnet, Network.MAINNET) == [mainnet]
    with pytest.raises(ColdImportRefused, match="a mainnet address, the node is on testnet"):
        parse_cold_import(mainnet, Network.TESTNET)
    with pytest.raises(ColdImportRefused, match="bad checksum"):
        parse_cold_import(_flip(mainnet, 5), Network.MAINNET)
    testnet_p2pkh = script.p2pkh(_root().derive("m/44h/1h/0h/0/0").key).address(NETWORKS["test"])
    assert testnet_p2pkh[0] in "mn"
    assert _addresses(testnet_p2pkh, Network.SIGNET) == [testnet_p2pkh]


def test_witness_v1_needs_bech32m_and_v0_needs_bech32() -> None:
    """BIP 350: witness v0 uses bech32, v1+ bech32m; either in the other encoding is invalid."""
    program = list(bytes(range(32)))
    taproot = bech32.encode("bcrt", 1, program)  # embit picks bech32m for v1
    assert _addresses(taproot, Network.REGTEST) == [taproot]
    data = [1, *bech32.convertbits(program, 8, 5)]
    v1_in_bech32 = bech32.bech32_encode(bech32.Encoding.BECH32, "bcrt", data)
    with pytest.raises(ColdImportRefused, match="line 1"):
        parse_cold_import(v1_in_bech32, Network.REGTEST)


def test_an_address_that_merely_contains_xprv_is_an_address() -> None:
    """x, p, r and v are bech32 characters: an address may contain "xprv" or "tprv"."""
    charset = "qpzry9x8gf2tvdw0s3jn54khce6mua7l"
    groups = [charset.index(c) for c in "tprvxprv"] + [0] * 24  # 32 groups of 5 bits = 20 bytes
    address = bech32.encode("bcrt", 0, bech32.convertbits(groups, 5, 8, False))
    assert address.startswith("bcrt1qtprvxprv")
    assert _addresses(address, Network.REGTEST) == [address]


def test_a_repeated_address_or_an_empty_list_is_refused() -> None:
    a0 = _regtest_address(0)
    with pytest.raises(ColdImportRefused, match=r"line 2: .* repeats line 1"):
        parse_cold_import(f"{a0}\n{a0}\n", Network.REGTEST)
    with pytest.raises(ColdImportRefused, match="no address"):
        parse_cold_import("# nothing\n\n", Network.REGTEST)


def test_a_descriptor_file_holds_one_descriptor() -> None:
    with pytest.raises(ColdImportRefused, match="line 2: a key import holds one descriptor"):
        parse_cold_import(f"{BIP84_ZPUB}\n{BIP84_RECEIVE[0]}\n", Network.MAINNET)
