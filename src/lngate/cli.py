"""The one entry point: ``lngate serve | migrate | user | admin | reconcile | audit | bench | ...``.

``--data-dir`` and ``--config`` are global: accepted before or after the subcommand.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

import typer

from lngate.bootstrap import Core, open_core
from lngate.cli_support import config_from_env
from lngate.cli_support import fail as _fail
from lngate.cli_support import operator as _operator
from lngate.cli_support import print_json as _print_json
from lngate.domain.errors import InvalidRequest, LngateError
from lngate.domain.users import Role
from lngate.lightning.simnet.cli import app as simnet_app
from lngate.merchant_cli import merchant_app
from lngate.regtest.cli import app as regtest_app
from lngate.treasury_cli import channels_app, cold_app, treasury_app

if TYPE_CHECKING:
    from lngate.services.withdrawal_review import WithdrawalReview

GLOBAL_OPTIONS = ("--data-dir", "--config")

app = typer.Typer(
    name="lngate",
    help="A Lightning gateway for custodial exchanges. Global options: --data-dir DIR "
    "(or LNGATE_DATA_DIR, default ./lngate-data), --config FILE (TOML).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
user_app = typer.Typer(help="Users and their API keys.", no_args_is_help=True)
admin_app = typer.Typer(help="Operator actions (audited).", no_args_is_help=True)
audit_app = typer.Typer(help="The hash-chained audit log.", no_args_is_help=True)
app.add_typer(user_app, name="user")
app.add_typer(admin_app, name="admin")
app.add_typer(audit_app, name="audit")
admin_key_app = typer.Typer(help="Admin API keys.", no_args_is_help=True)
admin_app.add_typer(admin_key_app, name="key")
admin_operator_app = typer.Typer(
    help="Console operators (password and TOTP).", no_args_is_help=True
)
admin_app.add_typer(admin_operator_app, name="operator")
app.add_typer(simnet_app, name="simnet")
app.add_typer(regtest_app, name="regtest")
app.add_typer(cold_app, name="cold")
app.add_typer(treasury_app, name="treasury")
app.add_typer(channels_app, name="channels")
app.add_typer(merchant_app, name="merchant")


def _core(**overrides: Any) -> Core:
    return open_core(config_from_env(**overrides))


def use_uvloop() -> None:
    """Serve on uvloop: ``asyncio.run`` ignores uvicorn's ``loop`` setting, and the default
    loop costs a large share of a small request's time."""
    import asyncio

    import uvloop

    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())


@app.command()
def serve(
    host: Annotated[str | None, typer.Option(help="listen address")] = None,
    port: Annotated[int | None, typer.Option(help="listen port")] = None,
    admin_port: Annotated[
        int | None, typer.Option(help="admin API and /metrics port (0: off); on 127.0.0.1")
    ] = None,
    processes: Annotated[
        int | None,
        typer.Option(
            help="run N API processes sharing the port, and the workers in processes of their "
            "own (PostgreSQL only; see README: Running at scale)"
        ),
    ] = None,
    worker_processes: Annotated[
        int, typer.Option(help="with --processes: how many `lngate worker` processes")
    ] = 1,
    workers: Annotated[
        bool, typer.Option("--workers/--no-workers", help="run the workers in this process")
    ] = True,
    reuse_port: Annotated[
        bool, typer.Option(help="bind the port with SO_REUSEPORT, shared with other processes")
    ] = False,
) -> None:
    """Run the API, the admin API and the workers in one process (or, with --processes, a
    supervisor of several)."""
    config = config_from_env(host=host, port=port, admin_port=admin_port)
    if processes is not None:
        from lngate.logs import configure_logging
        from lngate.processes import ClusterPlan, run_cluster

        configure_logging(json=config.log_json)
        try:
            plan = ClusterPlan(processes, worker_processes)
            raise typer.Exit(run_cluster(config, plan))
        except ValueError as exc:
            message = {"error": {"code": "INVALID_REQUEST", "message": str(exc)}}
            typer.echo(json.dumps(message), err=True)
            raise typer.Exit(2) from exc
    from lngate.server import run_server

    use_uvloop()
    run_server(config, with_workers=workers, reuse_port=reuse_port)


@app.command()
def worker() -> None:
    """Run the background workers without the API (a separate process in production; several
    may run on PostgreSQL)."""
    from lngate.server import run_workers

    use_uvloop()
    run_workers(config_from_env())


@app.command()
def deposit(
    username: str,
    amount_sat: Annotated[int, typer.Argument(help="0 for an amountless invoice")],
    memo: Annotated[str, typer.Option(help="shown to the payer")] = "",
) -> None:
    """Print an invoice that deposits to USERNAME when paid (operator tool)."""
    import asyncio

    from lngate.bootstrap import NodeRole, open_node, use_cases
    from lngate.services.deposits import DepositRecord

    core = _core()
    core.start_writer()
    node = open_node(core.config, NodeRole.OPERATOR_TOOL)
    deposits = use_cases(core, node).deposits

    async def run() -> DepositRecord:
        try:
            amount_msat = amount_sat * 1000 if amount_sat else None
            return await deposits.create_for_username(
                username, amount_msat, memo=memo, source="cli"
            )
        finally:
            await node.close()

    try:
        _print_json(asyncio.run(run()).as_json())
    except LngateError as exc:
        _fail(exc)
    finally:
        core.close()


@app.command()
def migrate() -> None:
    """Apply pending schema migrations (SQLite or PostgreSQL)."""
    from lngate.bootstrap import migrate_database

    applied, version = migrate_database(config_from_env())
    _print_json({"applied": applied, "version": version})


@user_app.command("create")
def user_create(
    name: str,
    role: Annotated[Role, typer.Option(help="user or merchant")] = Role.USER,
) -> None:
    """Create a user and print its credentials once (the secret is not shown again)."""
    from lngate.bootstrap import accounts_for

    core = _core()
    try:
        _print_json(accounts_for(core).create_user_sync(name, role).as_json())
    except LngateError as exc:
        _fail(exc)
    finally:
        core.close()


@user_app.command("passwd")
def user_passwd(
    username: str,
    password_stdin: Annotated[
        bool, typer.Option("--password-stdin", help="read the password from stdin (one line)")
    ] = False,
    reset_totp: Annotated[
        bool, typer.Option("--reset-totp", help="also remove their TOTP secret (a lost phone)")
    ] = False,
) -> None:
    """Set a user's password for the web wallet (argon2id); their open sessions end."""
    from lngate.bootstrap import web_logins_for

    password = _read_password(password_stdin)
    core = _core()
    try:
        logins = web_logins_for(core)
        logins.set_password_sync(username, password, actor=_operator(), reset_totp=reset_totp)
        _print_json({"username": username.lower(), "password_set": True, "totp_reset": reset_totp})
    except LngateError as exc:
        _fail(exc)
    finally:
        core.close()


@admin_operator_app.command("create")
def admin_operator_create(
    name: str,
    password_stdin: Annotated[
        bool, typer.Option("--password-stdin", help="read the password from stdin (one line)")
    ] = False,
) -> None:
    """Create a console operator; prints the TOTP provisioning URI (otpauth://) once: scan it
    into an authenticator app, every sign-in asks for its code."""
    from lngate.bootstrap import web_logins_for

    password = _read_password(password_stdin)
    core = _core()
    try:
        created = web_logins_for(core).create_operator_sync(name, password, actor=_operator())
        _print_json({"username": created.username, "provisioning_uri": created.provisioning_uri})
    except LngateError as exc:
        _fail(exc)
    finally:
        core.close()


def _read_password(from_stdin: bool) -> str:
    """One line from stdin (its newline dropped), or asked twice at a terminal; never an
    argument, which would land in the shell's history and the process list."""
    if from_stdin:
        return sys.stdin.readline().removesuffix("\n").removesuffix("\r")
    if not sys.stdin.isatty():
        _fail(InvalidRequest("give --password-stdin to read the password from stdin"))
    password: str = typer.prompt("Password", hide_input=True, confirmation_prompt=True)
    return password


@admin_app.command("adjust")
def admin_adjust(
    username: str,
    amount_msat: Annotated[int, typer.Argument(help="positive credits, negative debits")],
    reason: Annotated[str, typer.Option(help="why; kept in the audit log")],
    actor: Annotated[str, typer.Option(help="who is doing this")] = "",
) -> None:
    """Credit or debit a user against the adjustments account, with an audit record."""
    from lngate.bootstrap import accounts_for

    core = _core()
    try:
        who = actor or _operator()
        adjusted = accounts_for(core).adjust_sync(username, amount_msat, reason=reason, actor=who)
        _print_json(adjusted.as_json())
    except LngateError as exc:
        _fail(exc)
    finally:
        core.close()


@admin_app.command("withdrawals")
def admin_withdrawals() -> None:
    """List the withdrawals waiting for review."""
    core = _core()
    try:
        _print_json([w.as_json() for w in _review(core).queue_sync()])
    finally:
        core.close()


def _review(core: Core) -> WithdrawalReview:
    """The review use case: it needs no node, so the command line opens none for it."""
    from lngate.bootstrap import withdrawal_review_for

    return withdrawal_review_for(core)


def _decide(
    withdrawal_id: str,
    decision: Literal["approve", "reject"],
    reason: str,
    *,
    waiting_for: str = "review",
) -> None:
    """Apply an operator's decision on a waiting withdrawal (audited by the use case)."""
    core = _core()
    try:
        review = _review(core)
        decide = review.approve_sync if decision == "approve" else review.reject_sync
        result = decide(withdrawal_id, _operator(), reason)
        if result is None:
            message = f"withdrawal {withdrawal_id} is not waiting for {waiting_for}"
            typer.echo(
                json.dumps({"error": {"code": "NOT_IN_REVIEW", "message": message}}), err=True
            )
            raise typer.Exit(2)
        _print_json(result.as_json())
    except LngateError as exc:
        _fail(exc)
    finally:
        core.close()


@admin_app.command("approve")
def admin_approve(
    withdrawal_id: str,
    reason: Annotated[str, typer.Option(help="why; kept in the audit log")] = "reviewed",
) -> None:
    """Approve a withdrawal in review; the payment worker then sends it."""
    _decide(withdrawal_id, "approve", reason)


@admin_app.command("reject")
def admin_reject(
    withdrawal_id: str,
    reason: Annotated[str, typer.Option(help="why; kept in the audit log and shown to the user")],
) -> None:
    """Reject a withdrawal not yet sent (in review, or approved and waiting, e.g. while its
    user is frozen); its hold is released."""
    _decide(withdrawal_id, "reject", reason, waiting_for="review or sending")


@app.command()
def reconcile(
    node: Annotated[
        bool, typer.Option(help="also compare the books with the node's assets")
    ] = True,
) -> None:
    """Check the ledger invariants and (by default) the books against the node's assets; the
    report is stored, a failure halts withdrawals, and the exit code is 1."""
    import asyncio

    from lngate.bootstrap import (
        NodeRole,
        administration_for,
        open_node,
        open_signer_probe,
        use_cases,
    )
    from lngate.domain.errors import NodeError

    core = _core()
    try:
        if not node:
            ledger = administration_for(core).check_ledger_sync()
            _print_json(ledger.as_json())
            if not ledger.ok:
                raise typer.Exit(1)
            return
        core.start_writer()
        lightning = open_node(core.config, NodeRole.RECONCILER)
        solvency = use_cases(core, lightning).solvency

        async def run() -> dict[str, Any]:
            try:
                return (await solvency.reconcile(actor="cli:reconcile")).as_json()
            finally:
                await lightning.close()

        try:
            report = asyncio.run(run())
        except NodeError as exc:  # nothing compared, nothing stored: say why, with the signer
            report = {"ok": False, "error": {"code": exc.code, "message": str(exc)}}
        signer = open_signer_probe(core.config)
        if signer is not None:  # a watch-only node: is its remote signer reachable?
            report["signer"] = signer.check().as_json()
        _print_json(report)
        if not report["ok"]:
            raise typer.Exit(1)
    finally:
        core.close()


@admin_app.command("halt")
def admin_halt(reason: Annotated[str, typer.Option(help="why; kept in the audit log")]) -> None:
    """Halt withdrawals now (deposits and transfers go on)."""
    from lngate.bootstrap import administration_for

    core = _core()
    try:
        changed = administration_for(core).halt_sync(reason=reason, actor=_operator())
        _print_json(changed.as_json())
    except LngateError as exc:
        _fail(exc)
    finally:
        core.close()


@admin_app.command("resume")
def admin_resume(
    reason: Annotated[str, typer.Option(help="why; kept in the audit log")],
    acknowledge_shortfall_msat: Annotated[
        int | None, typer.Option(help="a shortfall you investigated and accept")
    ] = None,
) -> None:
    """Resume withdrawals after a halt."""
    from lngate.bootstrap import administration_for

    core = _core()
    try:
        changed = administration_for(core).resume_sync(
            reason=reason,
            actor=_operator(),
            acknowledge_shortfall_msat=acknowledge_shortfall_msat,
        )
        _print_json(changed.as_json())
    except LngateError as exc:
        _fail(exc)
    finally:
        core.close()


def _set_frozen(username: str, frozen: bool, reason: str) -> None:
    from lngate.bootstrap import administration_for

    core = _core()
    try:
        admin = administration_for(core)
        change = admin.set_frozen_sync(username, frozen, reason=reason, actor=_operator())
        _print_json(change.as_json())
    except LngateError as exc:
        _fail(exc)
    finally:
        core.close()


@admin_app.command("freeze")
def admin_freeze(
    username: str, reason: Annotated[str, typer.Option(help="why; kept in the audit log")]
) -> None:
    """Freeze a user: no withdrawals and no transfers until unfrozen."""
    _set_frozen(username, True, reason)


@admin_app.command("unfreeze")
def admin_unfreeze(
    username: str, reason: Annotated[str, typer.Option(help="why; kept in the audit log")]
) -> None:
    """Unfreeze a user."""
    _set_frozen(username, False, reason)


@admin_key_app.command("create")
def admin_key_create(name: str) -> None:
    """Create an admin key for the admin API (printed once)."""
    from lngate.bootstrap import accounts_for

    core = _core()
    try:
        _print_json(accounts_for(core).create_user_sync(name, Role.ADMIN).as_json())
    except LngateError as exc:
        _fail(exc)
    finally:
        core.close()


@audit_app.command("verify")
def audit_verify() -> None:
    """Verify the audit log's hash chain; exit 1 if a record was altered or removed."""
    from lngate.bootstrap import administration_for

    core = _core()
    try:
        verification = administration_for(core).verify_audit_sync()
        _print_json(verification.as_json())
        if not verification.ok:
            raise typer.Exit(1)
    finally:
        core.close()


@app.command()
def decode(bolt11: str) -> None:
    """Decode a BOLT11 invoice (offline: checks its checksum and signature)."""
    from lngate.lightning.bolt11 import decode_bolt11

    try:
        inv = decode_bolt11(bolt11.strip())
    except LngateError as exc:
        _fail(exc)
        return
    _print_json(
        {
            "payment_hash": inv.payment_hash.hex(),
            "payee": inv.payee,
            "amount_msat": inv.amount_msat,
            "network": inv.network.value,
            "description": inv.description,
            "description_hash": inv.description_hash.hex() if inv.description_hash else None,
            "created_at": inv.created_at,
            "expiry_s": inv.expiry_s,
            "expires_at": inv.expires_at,
            "min_final_cltv_expiry": inv.min_final_cltv_expiry,
            "route_hints": len(inv.route_hints),
        }
    )


@app.command()
def bench(
    suite: Annotated[str, typer.Option(help="all, transfers, lightning or pay")] = "all",
    api: Annotated[bool, typer.Option(help="also measure through HTTP (needs wrk)")] = True,
    transfers: Annotated[int, typer.Option(help="transfers per in-process run")] = 20_000,
    duration_s: Annotated[int, typer.Option(help="seconds per HTTP run")] = 10,
    lightning_ops: Annotated[int, typer.Option(help="deposits and withdrawals each")] = 500,
    sqlite: Annotated[bool, typer.Option(help="also measure SQLite")] = True,
    processes: Annotated[
        str,
        typer.Option(
            help="PostgreSQL: also measure HTTP through `serve --processes N` for each N "
            "(comma-separated, e.g. 1,2,4; empty: skip)"
        ),
    ] = "1,2,4",
    scale_concurrency: Annotated[int, typer.Option(help="wrk connections of those runs")] = 32,
) -> None:
    """Measure throughput and latency: transfers (service layer and HTTP, SQLite and, with
    LNGATE_BENCH_POSTGRES_URL, PostgreSQL), deposit credit latency and withdrawals on simnet,
    and Pay (orders created over HTTP, orders paid from a balance, webhook latency)."""
    from lngate.bench import run_benchmarks

    if suite not in ("all", "transfers", "lightning", "pay"):
        raise typer.BadParameter("suite must be all, transfers, lightning or pay")
    run_benchmarks(
        config_from_env(),
        suite=suite,
        api=api,
        transfers=transfers,
        duration_s=duration_s,
        lightning_ops=lightning_ops,
        sqlite=sqlite,
        scale_processes=tuple(int(n) for n in processes.split(",") if n.strip()),
        scale_concurrency=scale_concurrency,
    )


def _lift_global_options(argv: list[str]) -> list[str]:
    """Accept ``--data-dir``/``--config`` anywhere: move them into the environment."""
    out: list[str] = []
    i = 0
    while i < len(argv):
        arg = argv[i]
        name, eq, value = arg.partition("=")
        if name in GLOBAL_OPTIONS:
            if not eq:
                if i + 1 >= len(argv):
                    raise SystemExit(f"lngate: {name} needs a value")
                value = argv[i + 1]
                i += 1
            env = "LNGATE_DATA_DIR" if name == "--data-dir" else "LNGATE_CONFIG"
            os.environ[env] = str(Path(value).expanduser())
        else:
            out.append(arg)
        i += 1
    return out


def main(argv: list[str] | None = None) -> None:
    args = _lift_global_options(list(sys.argv[1:] if argv is None else argv))
    app(args, prog_name="lngate")


if __name__ == "__main__":
    main()
