"""Channels: opened with a fresh cold address as their upfront shutdown script, so that a
cooperative close can only pay cold storage; listed with whether their close address is ours.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

from lngate.domain.errors import InvalidAmount
from lngate.domain.treasury import ColdPurpose
from lngate.lightning.node import Channel, Node
from lngate.services.cold_storage import ColdStorage
from lngate.services.ports import Clock, UnitOfWork
from lngate.store import audit
from lngate.store import treasury as store
from lngate.store.db import Tx


@dataclass(frozen=True, slots=True)
class ChannelOpened:
    channel_point: str
    peer: str
    amount_sat: int
    push_sat: int
    close_address: str  # the cold address a cooperative close pays

    def as_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True, slots=True)
class ChannelView:
    """A channel of the node as the admin API (``schemas.Channel``) and the CLI show it."""

    channel_point: str
    peer_pubkey: str
    active: bool
    capacity_sat: int
    local_balance_msat: int
    remote_balance_msat: int
    close_address: str | None
    close_address_is_cold: bool

    def as_json(self) -> dict[str, Any]:
        return asdict(self)


class Channels:
    """Open channels whose cooperative close pays cold storage, audited whichever entry point
    (admin API, CLI) asks; list the node's channels."""

    def __init__(
        self, uow: UnitOfWork, node: Node, clock: Clock, cold_storage: ColdStorage
    ) -> None:
        self._uow = uow
        self._node = node
        self._clock = clock
        self._cold = cold_storage

    async def open_to_cold(
        self, peer: str, amount_sat: int, *, push_sat: int = 0, actor: str, reason: str
    ) -> ChannelOpened:
        """Open a channel whose upfront shutdown address (BOLT 2
        ``option_upfront_shutdown_script``) is a fresh cold address, so a cooperative close can
        only pay cold storage; audited as ``channel.open`` by ``actor``.

        The address is handed out (committed) before the node is asked; if the open fails it
        stays handed out and unused: a cold address is never handed out twice."""
        if amount_sat <= 0 or not 0 <= push_sat < amount_sat:
            raise InvalidAmount("need amount_sat > 0 and 0 <= push_sat < amount_sat")
        network = await self._cold.network()  # a node that does not answer costs no address
        cold = await self._cold.allocate(ColdPurpose.CHANNEL_CLOSE)
        await self._cold.require_cold_address(cold.address, ColdPurpose.CHANNEL_CLOSE, network)
        point = await self._node.open_channel(
            peer, amount_sat, push_sat=push_sat, close_address=cold.address
        )
        opened = ChannelOpened(point, peer, amount_sat, push_sat, cold.address)
        op = record_channel_op(opened, self._clock.now_ms(), actor=actor, reason=reason)
        await self._uow.write(op)
        return opened

    async def list(self) -> list[ChannelView]:
        """The node's open channels, with whether each close address is one of our cold ones."""
        channels = await self._node.list_channels()
        cold = await self._cold.known(c.close_address for c in channels)
        return [_view(c, c.close_address in cold) for c in channels]


def _view(channel: Channel, close_address_is_cold: bool) -> ChannelView:
    return ChannelView(
        channel_point=channel.channel_id,
        peer_pubkey=channel.peer_pubkey,
        active=channel.active,
        capacity_sat=channel.capacity_sat,
        local_balance_msat=channel.local_balance_msat,
        remote_balance_msat=channel.remote_balance_msat,
        close_address=channel.close_address,
        close_address_is_cold=close_address_is_cold,
    )


def record_channel_op(
    opened: ChannelOpened, at_ms: int, *, actor: str, reason: str
) -> Callable[[Tx], None]:
    """Bind the cold address to the channel the node opened, and audit the open.

    Both in one transaction, written only once the node has accepted the open (it returned a
    channel point): an open the node refused raised before this and leaves no audit record of
    a channel that does not exist, and an open it accepted is never bound without its record.
    (A crash between the node's answer and this write loses both, as it lost the binding
    before: the address stays handed out and unused, and the node still lists the channel.)"""

    def op(tx: Tx) -> None:
        store.mark_channel(tx, opened.close_address, opened.channel_point, opened.amount_sat, at_ms)
        audit.append(
            tx,
            actor=actor,
            action="channel.open",
            subject=f"peer:{opened.peer}",
            reason=reason,
            details=opened.as_json(),
        )

    return op
