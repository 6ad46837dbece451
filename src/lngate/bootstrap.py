"""The composition root, the one module that knows every adapter: config -> database and its
unit of work, keys, the node credential per process role, and every use case over them."""

from __future__ import annotations

import asyncio
import contextlib
import enum
import threading
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from lngate.config import Config
from lngate.domain.ledger import SYSTEM_ACCOUNT_CODES, AccountFlags
from lngate.lightning.node import Node
from lngate.metrics import Metrics
from lngate.security.secrets import ServerKey
from lngate.services.account_events import AccountEvents
from lngate.services.accounts import Accounts
from lngate.services.admin import Administration
from lngate.services.api_keys import ApiKeys
from lngate.services.channels import Channels
from lngate.services.clock import SYSTEM_CLOCK
from lngate.services.cold_storage import ColdStorage
from lngate.services.config_audit import ConfigAudit
from lngate.services.deposits import Deposits
from lngate.services.lnurl import LightningAddresses
from lngate.services.lnurl_client import HttpLnurlResolver
from lngate.services.monitoring import Monitoring
from lngate.services.onchain_books import OnchainBooks
from lngate.services.orders import Orders
from lngate.services.payouts import Payouts
from lngate.services.ports import Clock
from lngate.services.rate_limits import RateLimiter
from lngate.services.refunds import Refunds
from lngate.services.solvency import Solvency
from lngate.services.transfers import Transfers
from lngate.services.treasury_status import TreasuryStatus
from lngate.services.wallet import Wallet
from lngate.services.web_logins import WebLogins
from lngate.services.webhook_delivery import WebhookDispatch
from lngate.services.webhooks import WebhookEndpoints
from lngate.services.withdrawal_review import WithdrawalReview
from lngate.services.withdrawal_settlement import InternalSettlement
from lngate.services.withdrawals import WithdrawalRequests
from lngate.store.db import Database, Dialect
from lngate.store.ledger import ensure_account
from lngate.store.migrate import migrate
from lngate.store.unit_of_work import GroupCommitUnitOfWork
from lngate.store.writer import LedgerWriter

if TYPE_CHECKING:
    from lngate.lightning.lnd.signer import SignerProbe


class CommitSignal:
    """Wakes coroutines (on any event loop) when this process's writer commits, so live
    streams answer at once; writes by other processes are found by their polling."""

    def __init__(self) -> None:
        self._waiters: set[tuple[asyncio.AbstractEventLoop, asyncio.Event]] = set()
        self._lock = threading.Lock()

    def fire(self) -> None:
        with self._lock:
            waiters = list(self._waiters)
        for loop, event in waiters:
            with contextlib.suppress(RuntimeError):  # that loop has closed
                loop.call_soon_threadsafe(event.set)

    async def wait(self, timeout_s: float) -> None:
        entry = (asyncio.get_running_loop(), asyncio.Event())
        with self._lock:
            self._waiters.add(entry)
        try:
            await asyncio.wait_for(entry[1].wait(), timeout_s)
        except TimeoutError:
            pass
        finally:
            with self._lock:
                self._waiters.discard(entry)


@dataclass
class Core:
    """The adapters of one process: config, database and its unit of work, the server key,
    the system accounts, the wake-ups and the metrics. Only the composition root and the
    processes it builds hold one; use cases are given what they need of it (``use_cases``)."""

    config: Config
    db: Database
    server_key: ServerKey
    system_accounts: dict[str, int] = field(default_factory=dict)
    commits: CommitSignal = field(default_factory=CommitSignal)
    # Wakes the payment worker in this process when there is withdrawal work (others poll).
    withdrawal_work: CommitSignal = field(default_factory=CommitSignal)
    metrics: Metrics = field(default_factory=Metrics)
    clock: Clock = SYSTEM_CLOCK
    uow: GroupCommitUnitOfWork = field(init=False)

    def __post_init__(self) -> None:
        self.uow = GroupCommitUnitOfWork(self.db, on_commit=self.commits.fire)

    @property
    def writer(self) -> LedgerWriter | None:
        return self.uow.writer

    def start_writer(self) -> None:
        self.uow.start()

    def close(self) -> None:
        self.uow.close()
        self.db.close()


class NodeRole(enum.Enum):
    """Who holds a node connection, which decides the credential it gets (least privilege)."""

    PUBLIC_API = "public API"  # creates and looks up invoices; cancels its users' own
    INVOICE_WATCHER = "invoice watcher"  # follows invoices
    OPERATOR_TOOL = "operator tool"  # `lngate deposit`: an invoice for a user
    PAYMENT_WORKER = "payment worker"  # pays
    TREASURY = "treasury"  # sweeps to cold, opens channels, reads the wallet (admin API too)
    RECONCILER = "reconciler"  # reads the wallet and the channels' balances

    @property
    def spends(self) -> bool:
        """Whether the role needs the credential that can move the node's funds."""
        return self in _SPENDING_ROLES


_SPENDING_ROLES = frozenset({NodeRole.PAYMENT_WORKER, NodeRole.TREASURY, NodeRole.RECONCILER})


def open_node(config: Config, role: NodeRole) -> Node:
    """The configured Lightning node, with the credential ``role`` needs: the spending one only
    for the roles that move or read the node's funds, the invoice-only one for the rest."""
    if config.node_backend == "simnet":
        from lngate.lightning.simnet import SimnetNode

        return SimnetNode.open(config.simnet_dir)
    if config.node_backend == "lnd":
        from lngate.lightning.lnd import LndNode

        if config.lnd is None:
            raise ValueError("node backend 'lnd' needs an [lnd] section in the config file")
        macaroon = config.lnd.spending_macaroon if role.spends else config.lnd.invoice_macaroon
        if macaroon is None:
            raise ValueError(f"[lnd] spending_macaroon is required for the {role.value}")
        return LndNode.from_files(
            config.lnd.rest_url, config.lnd.tls_cert, macaroon, signer=open_signer_probe(config)
        )
    raise ValueError(f"unknown node backend {config.node_backend!r} (simnet or lnd)")


def open_signer_probe(config: Config) -> SignerProbe | None:
    """The check of a watch-only LND's remote signer, when the config names one
    (``[lnd] signer_rpc_host``, ``signer_tls_cert``); None otherwise."""
    if config.node_backend != "lnd" or config.lnd is None:
        return None
    from lngate.lightning.lnd.signer import signer_probe

    return signer_probe(config.lnd.signer_rpc_host, config.lnd.signer_tls_cert)


def open_core(config: Config, *, auto_migrate: bool | None = None) -> Core:
    """Open the database (migrating the embedded default automatically) and load the keys.

    PostgreSQL is migrated by ``lngate migrate`` (an operator step) unless asked otherwise.
    """
    config.data_dir.mkdir(parents=True, exist_ok=True)
    db = Database(config.effective_database_url)
    if auto_migrate is None:
        auto_migrate = db.dialect is Dialect.SQLITE
    if auto_migrate:
        migrate(db)
    core = Core(config=config, db=db, server_key=ServerKey.load_or_create(config.server_key_path))
    with db.transaction() as tx:
        for kind, code in SYSTEM_ACCOUNT_CODES.items():
            core.system_accounts[kind.value] = ensure_account(tx, code, kind, AccountFlags.NONE)
    return core


def accounts_for(core: Core) -> Accounts:
    """Accounts alone, for tools that need no node (``lngate user create``, tests)."""
    return Accounts(
        core.uow,
        core.server_key,
        public_host=core.config.public_host,
        system_accounts=core.system_accounts,
    )


def administration_for(core: Core, signer: SignerProbe | None = None) -> Administration:
    """The operators' use case alone, for tools that need no node (the CLI). ``signer``: the
    process's probe of the remote signer, when it has one already (else one is opened)."""
    return Administration(
        core.uow,
        core.clock,
        public_host=core.config.public_host,
        withdrawal_work=core.withdrawal_work,
        signer=signer or open_signer_probe(core.config),
    )


def web_logins_for(core: Core) -> WebLogins:
    """Passwords, TOTP and sessions alone, for tools that need no node (the CLI)."""
    return WebLogins(core.uow, core.clock, core.server_key, core.config.web)


def withdrawal_review_for(core: Core) -> WithdrawalReview:
    """The review queue and the operators' decisions alone: they need no node (the CLI)."""
    return WithdrawalReview(core.uow, core.withdrawal_work)


def migrate_database(config: Config) -> tuple[list[str], int]:
    """``lngate migrate``: the migrations applied now, and the schema version after them."""
    from lngate.store.migrate import current_version

    db = Database(config.effective_database_url)
    try:
        return migrate(db), current_version(db)
    finally:
        db.close()


@dataclass(frozen=True)
class UseCases:
    """The use cases of one process, each given exactly the adapters it needs. Built here
    only (``use_cases``): the entry points (routes, workers, the CLI) call these and never
    the store or a node themselves."""

    # --- withdrawals (requests, review, payouts) ---
    withdrawal_requests: WithdrawalRequests
    withdrawal_review: WithdrawalReview
    payouts: Payouts
    # --- deposits and Lightning Addresses ---
    deposits: Deposits
    lightning_addresses: LightningAddresses
    # --- treasury: cold storage, channels, on-chain books, status ---
    cold_storage: ColdStorage
    channels: Channels
    onchain_books: OnchainBooks
    treasury_status: TreasuryStatus
    # --- Pay: orders and refunds ---
    orders: Orders
    refunds: Refunds
    webhooks: WebhookEndpoints
    webhook_dispatch: WebhookDispatch
    # --- accounts, transfers, administration, solvency ---
    accounts: Accounts
    transfers: Transfers
    admin: Administration
    solvency: Solvency
    monitoring: Monitoring
    api_keys: ApiKeys
    account_events: AccountEvents
    config_audit: ConfigAudit
    # --- the web wallet and the console's sign-in ---
    web_logins: WebLogins
    wallet: Wallet


def use_cases(core: Core, node: Node) -> UseCases:
    """Every use case over ``core``'s adapters and ``node``: the invoice-only or the spending
    credential, as the process's role asks (``open_node``)."""
    config, uow, clock, books = core.config, core.uow, core.clock, core.system_accounts
    signer = open_signer_probe(config)
    deposits = Deposits(uow, node, config.limits, books, clock)
    lightning_addresses = LightningAddresses(
        uow,
        deposits,
        RateLimiter(uow, clock),
        limits=config.limits,
        public_url=config.effective_public_url,
        public_host=config.public_host,
        callbacks_per_minute=config.lnurl_callbacks_per_minute,
    )
    internal = InternalSettlement(uow, node, books)
    cold_storage = ColdStorage(uow, clock, node, books)
    orders = Orders(
        uow,
        node,
        pay=config.pay,
        limits=config.limits,
        withdrawals=config.withdrawals,
        system_accounts=books,
        clock=clock,
        server_key=core.server_key,
        public_url=config.effective_public_url,
    )
    withdrawal_requests = WithdrawalRequests(
        uow,
        node,
        config.withdrawals,
        books,
        clock,
        core.withdrawal_work,
        HttpLnurlResolver(config.lnurl_allow_private_hosts),
        # Our own users' addresses are paid without an HTTP round trip to ourselves.
        addresses=lightning_addresses,
        public_host=config.public_host,
        internal=internal,
        orders=orders,  # a withdrawal to an order's invoice pays it from the balance
    )
    accounts = accounts_for(core)
    transfers = Transfers(uow, max_amount_msat=config.limits.transfer_max_msat, clock=clock)
    web_logins = web_logins_for(core)
    return UseCases(
        withdrawal_requests=withdrawal_requests,
        withdrawal_review=withdrawal_review_for(core),
        payouts=Payouts(
            uow, node, config.withdrawals, books, clock, signer=signer, internal=internal
        ),
        deposits=deposits,
        lightning_addresses=lightning_addresses,
        orders=orders,
        refunds=Refunds(uow, withdrawal_requests, books, clock),
        webhooks=WebhookEndpoints(uow, clock, core.server_key, config.pay),
        webhook_dispatch=WebhookDispatch(uow, clock, core.server_key),
        cold_storage=cold_storage,
        channels=Channels(uow, node, clock, cold_storage),
        onchain_books=OnchainBooks(uow, node, books, clock),
        treasury_status=TreasuryStatus(uow, node, config.treasury, books),
        accounts=accounts,
        transfers=transfers,
        admin=administration_for(core, signer),  # one probe: its checks are cached
        solvency=Solvency(
            uow,
            node,
            tolerance_msat=config.reconcile_tolerance_msat,
            inbound_floor_msat=config.inbound_floor_msat,
            clock=clock,
        ),
        monitoring=Monitoring(uow, signer),
        api_keys=ApiKeys(uow, core.server_key),
        account_events=AccountEvents(uow, core.commits),
        config_audit=ConfigAudit(uow, config),
        web_logins=web_logins,
        wallet=Wallet(uow, web_logins, accounts, deposits, withdrawal_requests, transfers, orders),
    )
