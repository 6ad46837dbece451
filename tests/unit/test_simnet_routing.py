"""simnet path finding and fees (pure)."""

from __future__ import annotations

from lngate.lightning.simnet.routing import Edge, find_route


def edge(src: str, dst: str, available_msat: int, base: int = 1000, ppm: int = 100) -> Edge:
    return Edge(f"{src}-{dst}", src, dst, available_msat, base, ppm)


def test_direct_hop_pays_no_fee() -> None:
    route = find_route([edge("a", "b", 10_000)], "a", "b", 5_000)
    assert route is not None and route.fee_msat == 0 and route.total_msat == 5_000


def test_two_hops_pay_the_forwarders_fee() -> None:
    route = find_route([edge("a", "h", 10**9), edge("h", "c", 10**9)], "a", "c", 1_000_000)
    assert route is not None
    assert route.fee_msat == 1000 + 100  # base + 1_000_000 * 100 / 1e6
    assert [hop.amount_msat for hop in route.hops] == [1_001_100, 1_000_000]


def test_liquidity_is_respected_and_cheapest_path_wins() -> None:
    edges = [
        edge("a", "x", 10**9, base=5000),
        edge("x", "c", 10**9, base=5000),
        edge("a", "y", 10**9),
        edge("y", "c", 10**9, base=9000),
    ]
    route = find_route(edges, "a", "c", 1_000)
    assert route is not None and [h.to_node for h in route.hops] == ["x", "c"]
    assert find_route([edge("a", "b", 999)], "a", "b", 1_000) is None
    # the first hop must carry the amount plus the next hop's fee
    assert find_route([edge("a", "h", 1_500), edge("h", "c", 10**9)], "a", "c", 1_000) is None


def test_no_path() -> None:
    assert find_route([edge("a", "b", 10**9)], "a", "c", 1) is None
