"""Path finding and fees over simnet's channel graph (pure: no I/O)."""

from __future__ import annotations

import heapq
from dataclasses import dataclass

MAX_HOPS = 20  # BOLT #4: an onion holds at most 20 hops


@dataclass(frozen=True, slots=True)
class Edge:
    """One direction of a channel: ``from_node`` can send up to ``available_msat`` to ``to_node``
    and charges ``fee_base_msat + amount * fee_ppm / 1e6`` to forward over it."""

    channel_point: str
    from_node: str
    to_node: str
    available_msat: int
    fee_base_msat: int
    fee_ppm: int

    def fee_msat(self, amount_msat: int) -> int:
        # BOLT #7: fee_base_msat + (amount_to_forward * fee_proportional_millionths / 1000000)
        return self.fee_base_msat + amount_msat * self.fee_ppm // 1_000_000


@dataclass(frozen=True, slots=True)
class Hop:
    channel_point: str
    from_node: str
    to_node: str
    amount_msat: int  # what crosses this channel (the next hops' fees included)


@dataclass(frozen=True, slots=True)
class Route:
    hops: tuple[Hop, ...]

    def __post_init__(self) -> None:
        assert 1 <= len(self.hops) <= MAX_HOPS

    @property
    def total_msat(self) -> int:
        return self.hops[0].amount_msat

    @property
    def amount_msat(self) -> int:
        return self.hops[-1].amount_msat

    @property
    def fee_msat(self) -> int:
        return self.total_msat - self.amount_msat


def find_route(edges: list[Edge], source: str, target: str, amount_msat: int) -> Route | None:
    """The cheapest route delivering ``amount_msat`` to ``target`` over edges with enough
    liquidity, or None. Dijkstra backwards from the target, as LND does, so each hop's amount
    includes the fees of the hops after it. The source pays no fee on its own channel."""
    assert amount_msat > 0 and source != target
    incoming: dict[str, list[Edge]] = {}
    for edge in edges:
        incoming.setdefault(edge.to_node, []).append(edge)
    # need[n]: what n must receive to deliver amount_msat to target; next_hop[n]: n's edge onward
    need: dict[str, int] = {target: amount_msat}
    next_edge: dict[str, Edge] = {}
    hops_to_target: dict[str, int] = {target: 0}
    queue: list[tuple[int, str]] = [(amount_msat, target)]
    done: set[str] = set()
    while queue:  # bounded: each node is settled once
        cost, node = heapq.heappop(queue)
        if node in done:
            continue
        done.add(node)
        if node == source:
            break
        for edge in incoming.get(node, []):
            sender = edge.from_node
            if sender in done or edge.available_msat < cost:
                continue
            if hops_to_target[node] + 1 > MAX_HOPS:
                continue
            sender_need = cost if sender == source else cost + edge.fee_msat(cost)
            if sender_need < need.get(sender, sender_need + 1):
                need[sender] = sender_need
                next_edge[sender] = edge
                hops_to_target[sender] = hops_to_target[node] + 1
                heapq.heappush(queue, (sender_need, sender))
    if source not in next_edge:
        return None
    hops: list[Hop] = []
    node = source
    while node != target and len(hops) < MAX_HOPS:
        edge = next_edge[node]
        hops.append(Hop(edge.channel_point, edge.from_node, edge.to_node, need[edge.to_node]))
        node = edge.to_node
    return Route(tuple(hops))
