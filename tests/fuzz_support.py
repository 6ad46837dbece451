"""Machinery for the HTTP fuzz test (tests/integration/test_api_fuzz.py): the routes of an app,
requests as a server hands them to the app, an in-process ASGI driver, the error-body checks,
a snapshot of the ledger, and the hypothesis strategies for hostile requests.

Requests are built the way uvicorn builds an ASGI scope from the wire, so nothing reaches the
app that a real HTTP server would not pass on: the request target is visible ASCII (anything
else is percent-encoded, validly or not), ``path`` is the target's path percent-decoded as
UTF-8 with replacement, header values are bytes without control characters (obs-text, bytes
0x80-0xFF, is allowed: Starlette reads it as Latin-1, so ``b"\\xb9"`` arrives as ``'¹'``).

The driver is our own rather than httpx's ``ASGITransport`` because that one buffers the whole
response: a successful ``GET /v1/events`` streams for ever. Here the client hangs up after the
first chunk of a stream, as a closing browser does.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import json
import re
import time
import traceback
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote, unquote

from fastapi import FastAPI
from hypothesis import strategies as st
from pydantic import BaseModel
from starlette.routing import compile_path

from lngate.api.auth import Authenticator
from lngate.security.signing import KEY_HEADER, SIGNATURE_HEADER, TIMESTAMP_HEADER, sign
from lngate.store.db import Tx

# -- routes --------------------------------------------------------------------------------------

LNURL_PREFIXES = ("/.well-known/lnurlp/", "/lnurlp/")
# The server-rendered pages (checkout, wallet, console) and their assets: a person's browser
# reads their refusals, as HTML (or text), with the status the API would give.
PAGE_PREFIXES = ("/pay/", "/assets/", "/app/", "/console/")


@dataclass(frozen=True)
class Route:
    """One route of an app, as far as a client can tell: where, how, and what it reads."""

    path: str  # the template, e.g. /v1/deposits/{deposit_id}
    methods: frozenset[str]
    path_params: tuple[str, ...]
    query_params: tuple[str, ...]
    header_params: tuple[str, ...]  # as sent, e.g. Idempotency-Key
    body_fields: tuple[str, ...]  # the fields of the JSON body model; () when there is none
    required_fields: frozenset[str]
    has_body: bool
    signed: bool  # behind the Authenticator
    regex: re.Pattern[str] = field(compare=False, repr=False)

    @property
    def lnurl(self) -> bool:
        return self.path.startswith(LNURL_PREFIXES)

    @property
    def page(self) -> bool:
        """A route of the server-rendered pages or their assets, not of the JSON API."""
        return self.path.startswith(PAGE_PREFIXES)

    def matches(self, path: str) -> bool:
        return self.regex.match(path) is not None

    def __str__(self) -> str:
        return f"{'/'.join(sorted(self.methods - {'HEAD'}))} {self.path}"


def _route_contexts(app: FastAPI) -> Iterable[Any]:
    """``app.routes`` with included routers expanded (FastAPI 0.16x includes them lazily)."""
    from fastapi import routing

    expand: Callable[[Sequence[Any]], Iterable[Any]] | None = getattr(
        routing, "iter_route_contexts", None
    )
    return list(app.routes) if expand is None else expand(app.routes)


def _flat_params(dependant: Any) -> tuple[list[Any], list[Any], list[Any], bool]:
    """(path, query, header params, signed) of a dependant and all its sub-dependencies."""
    path, query = list(dependant.path_params), list(dependant.query_params)
    header = list(dependant.header_params)
    signed = isinstance(dependant.call, Authenticator)
    for sub in dependant.dependencies:
        p, q, h, s = _flat_params(sub)
        path, query, header, signed = path + p, query + q, header + h, signed or s
    return path, query, header, signed


def routes_of(app: FastAPI) -> list[Route]:
    """Every HTTP route of ``app``, enumerated from ``app.routes``: a new route is fuzzed
    without anyone listing it."""
    found: list[Route] = []
    for r in _route_contexts(app):
        path, methods = getattr(r, "path", None), getattr(r, "methods", None)
        if not isinstance(path, str) or not methods:
            continue
        pp: list[Any] = []
        qp: list[Any] = []
        hp: list[Any] = []
        signed = False
        if (dependant := getattr(r, "dependant", None)) is not None:
            pp, qp, hp, signed = _flat_params(dependant)
        body_field = getattr(r, "body_field", None)
        model = getattr(getattr(body_field, "field_info", None), "annotation", None)
        fields: dict[str, bool] = {}
        if isinstance(model, type) and issubclass(model, BaseModel):
            fields = {f.alias or n: f.is_required() for n, f in model.model_fields.items()}
        found.append(
            Route(
                path=path,
                methods=frozenset(methods),
                path_params=tuple(dict.fromkeys(p.name for p in pp)),
                query_params=tuple(dict.fromkeys(p.alias for p in qp)),
                header_params=tuple(dict.fromkeys(p.alias for p in hp)),
                body_fields=tuple(fields),
                required_fields=frozenset(n for n, required in fields.items() if required),
                has_body=body_field is not None,
                signed=signed,
                regex=compile_path(path)[0],
            )
        )
    return found


def route_for(routes: Sequence[Route], method: str, path: bytes) -> Route | None:
    """The route a request reaches, as Starlette picks: the first whose path and method match,
    else the first whose path matches (which answers 405)."""
    decoded = unquote(path.decode("ascii"))
    matching = [r for r in routes if r.matches(decoded)]
    return next((r for r in matching if method in r.methods), next(iter(matching), None))


# -- requests ------------------------------------------------------------------------------------

Headers = tuple[tuple[bytes, bytes], ...]
AUTH_HEADERS = tuple(h.lower().encode() for h in (KEY_HEADER, TIMESTAMP_HEADER, SIGNATURE_HEADER))
# Half the requests are correctly signed, so that they get past authentication into the
# handlers; the others are signed with a hostile timestamp, signed wrongly, carry hostile
# signature headers, or none.
AUTH_MODES = ("valid",) * 4 + ("fuzzed-timestamp", "bad-signature", "fuzzed", "none")


def _short(b: bytes, limit: int = 400) -> str:
    if len(b) <= limit:
        return repr(b)
    return f"{b[: limit // 2]!r}...<{len(b)} bytes>...{b[-60:]!r}"


@dataclass(frozen=True)
class Request:
    """A request on the wire, before (a plan) or after (sent) it is signed."""

    method: str
    path: bytes  # the raw path of the target, visible ASCII
    query: bytes
    headers: Headers  # lower-case names
    body: bytes
    auth: str = "none"  # one of AUTH_MODES
    fuzz_timestamp: bytes = b""  # for auth == "fuzzed-timestamp"
    key: str = "own"  # whose key signs: "own" (the listener's) or "other" (the other listener's)
    state: str = "normal"  # what it finds: "normal", "halted" withdrawals, "frozen" fuzz user

    def __repr__(self) -> str:
        target = self.path + (b"?" + self.query if self.query else b"")
        lines = [f"{self.method} {_short(target)}  [auth: {self.auth}, state: {self.state}]"]
        lines += [f"  {n.decode('latin-1')}: {_short(v, 200)}" for n, v in self.headers]
        lines.append(f"  body: {_short(self.body)}")
        return "\n".join(lines)

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:  # hypothesis prints this
        printer.text(repr(self))


class Signer:
    """Signs a request at send time, over exactly what is sent (method, raw path and query,
    body bytes), with strictly increasing timestamps: no two requests share a signature, so
    none is refused as a replay of another."""

    def __init__(self, keys: Mapping[str, tuple[str, str]]) -> None:
        self._keys = keys  # "own"/"other" -> (api_key, api_secret)
        self._last_ms = 0

    def _now_ms(self) -> int:
        self._last_ms = max(int(time.time() * 1000), self._last_ms + 1)
        return self._last_ms

    def signed(self, plan: Request) -> Request:
        if plan.auth == "fuzzed":
            return plan
        headers = [(n, v) for n, v in plan.headers if n not in AUTH_HEADERS]
        if plan.auth != "none":
            api_key, secret = self._keys[plan.key]
            fuzzed = plan.auth == "fuzzed-timestamp"
            ts = plan.fuzz_timestamp if fuzzed else str(self._now_ms()).encode()
            target = plan.path + (b"?" + plan.query if plan.query else b"")
            signature = sign(
                secret, ts.decode("latin-1"), plan.method, target.decode("latin-1"), plan.body
            )
            if plan.auth == "bad-signature":
                signature = signature[::-1]
            values = (api_key.encode(), ts, signature.encode())
            headers = [*zip(AUTH_HEADERS, values, strict=True), *headers]
        return dataclasses.replace(plan, headers=tuple(headers))


# -- the ASGI driver -----------------------------------------------------------------------------


@dataclass
class Outcome:
    status: int
    headers: list[tuple[bytes, bytes]]
    body: bytes
    error: BaseException | None  # what the app raised (Starlette re-raises after its 500)
    timed_out: bool = False

    def header(self, name: bytes) -> bytes | None:
        return next((v for n, v in self.headers if n.lower() == name), None)


async def call_asgi(
    app: Any,
    request: Request,
    *,
    server: tuple[str, int],
    client: tuple[str, int] = ("127.0.0.1", 40000),
    timeout_s: float = 15.0,
) -> Outcome:
    """One request through ``app``, scoped as uvicorn scopes it (ASGI spec 2.3: the app learns
    of a hang-up from ``receive``; what it sends after that is dropped)."""
    scope: dict[str, Any] = {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.3"},
        "http_version": "1.1",
        "method": request.method,
        "scheme": "http",
        "path": unquote(request.path.decode("ascii")),
        "raw_path": request.path,
        "root_path": "",
        "query_string": request.query,
        "headers": [(n.lower(), v) for n, v in request.headers],
        "client": client,
        "server": server,
    }
    body_given = False
    hung_up = asyncio.Event()
    status = 0
    headers: list[tuple[bytes, bytes]] = []
    chunks: list[bytes] = []
    streaming = False

    async def receive() -> dict[str, Any]:
        nonlocal body_given
        if not body_given:
            body_given = True
            return {"type": "http.request", "body": request.body, "more_body": False}
        await hung_up.wait()
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        nonlocal status, headers, streaming
        if hung_up.is_set():
            return
        if message["type"] == "http.response.start":
            status = int(message["status"])
            headers = [(bytes(n), bytes(v)) for n, v in message.get("headers", [])]
            ctype = next((v for n, v in headers if n.lower() == b"content-type"), b"")
            streaming = ctype.startswith(b"text/event-stream")
        elif message["type"] == "http.response.body":
            chunks.append(bytes(message.get("body", b"")))
            if not message.get("more_body", False) or (streaming and any(chunks)):
                hung_up.set()  # the end, or the first chunk of a stream: hang up

    error: BaseException | None = None
    timed_out = False
    try:
        async with asyncio.timeout(timeout_s) as deadline:
            await app(scope, receive, send)
    except TimeoutError as exc:
        timed_out = deadline.expired()
        error = None if timed_out else exc
    except Exception as exc:
        error = exc
    while isinstance(error, BaseExceptionGroup) and len(error.exceptions) == 1:
        error = error.exceptions[0]
    if error is not None and status == 0:
        status = 500  # raised before answering: the server answers 500
    return Outcome(status, headers, b"".join(chunks), error, timed_out)


# -- checks --------------------------------------------------------------------------------------


class ContractBroken(AssertionError):
    """A broken promise other than a crash; ``key`` tells one kind from another."""

    def __init__(self, key: str, message: str) -> None:
        super().__init__(message)
        self.key = key


def error_body_problem(route: Route | None, method: str, out: Outcome) -> ContractBroken | None:
    """How the answer breaks the error contract, or None.

    An error (4xx) carries ``{"error": {"code": str, "message": str}}``; on an LNURL route that
    the method reached, the LUD-06 ``{"status": "ERROR", "reason": str}`` instead (which those
    routes also answer with a 200, for wallets that read only the body)."""
    if method == "HEAD":
        return None
    lud = route is not None and route.lnurl and method in route.methods
    if out.status < 400 and not (lud and out.body.lstrip().startswith(b"{")):
        return None
    where = f"{method} {route.path if route else '(no route)'} -> {out.status}"

    def broken(what: str, detail: str) -> ContractBroken:
        return ContractBroken(f"{where}: {what}", f"{where}: {what}: {detail}")

    ctype = out.header(b"content-type") or b""
    if (
        route is not None
        and route.page
        and method in route.methods
        and 400 <= out.status < 500
        and ctype.startswith((b"text/html", b"text/plain"))
    ):
        if out.header(b"x-content-type-options") != b"nosniff":
            return broken("a page's refusal without nosniff", f"content-type {ctype!r}")
        return None
    if out.status >= 400 and not ctype.startswith(b"application/json"):
        return broken("not JSON", f"content-type {ctype!r}, body {out.body[:200]!r}")
    try:
        body = json.loads(out.body)
    except ValueError:
        return broken("not JSON", f"body {out.body[:200]!r}")
    err = body.get("error") if isinstance(body, dict) else None
    code = err.get("code") if isinstance(err, dict) else None
    if lud:
        if out.status < 400 and not (isinstance(body, dict) and body.get("status") == "ERROR"):
            return None  # a pay request or an invoice
        if (
            isinstance(body, dict)
            and set(body) == {"status", "reason"}
            and body["status"] == "ERROR"
            and isinstance(body["reason"], str)
        ):
            return None
        return broken(f"not a LUD-06 error body (code {code})", f"{body!r:.300}")
    if (
        isinstance(body, dict)
        and set(body) == {"error"}
        and isinstance(code, str)
        and code
        and isinstance(err, dict)
        and isinstance(err.get("message"), str)
    ):
        return None
    return broken("not an {error: {code, message}} body", f"{body!r:.300}")


# -- the ledger ----------------------------------------------------------------------------------

LEDGER_QUERIES = {
    "balances": "SELECT id, code, debits_pending, debits_posted, credits_pending, credits_posted "
    "FROM accounts ORDER BY id",
    "transfers": "SELECT COUNT(*), COALESCE(SUM(amount_msat), 0) FROM transfers",
    "holds": "SELECT hold_state, COUNT(*) FROM transfers WHERE hold_state IS NOT NULL "
    "GROUP BY hold_state ORDER BY hold_state",
    "withdrawals": "SELECT status, COUNT(*) FROM withdrawals GROUP BY status ORDER BY status",
    "deposits": "SELECT status, COUNT(*) FROM deposits GROUP BY status ORDER BY status",
    "idempotency_keys": "SELECT COUNT(*) FROM idempotency_keys",
    "events": "SELECT COUNT(*) FROM events",
    "unmatched_payments": "SELECT COUNT(*) FROM unmatched_payments",
    "sweeps": "SELECT COUNT(*) FROM sweeps",
}


def ledger_snapshot(tx: Tx) -> dict[str, list[tuple[Any, ...]]]:
    """Balances, and the count of everything that moves or reserves money."""
    return {
        name: [tuple(int(v) if isinstance(v, int) else v for v in row) for row in tx.all(sql)]
        for name, sql in LEDGER_QUERIES.items()
    }


# -- collecting failures -------------------------------------------------------------------------


def crash_site(exc: BaseException) -> tuple[str, str]:
    """(the traceback's last frame, the last frame in lngate) of an exception."""
    frames = traceback.extract_tb(exc.__traceback__)

    def where(f: traceback.FrameSummary) -> str:
        return f"{f.filename}:{f.lineno} in {f.name}: {(f.line or '').strip()}"

    ours = [f for f in frames if "/lngate/" in f.filename]
    return (where(frames[-1]) if frames else "?"), (where(ours[-1]) if ours else "-")


def failure_key(exc: BaseException) -> str:
    """What tells one failure from another: a broken contract's own key; for a crash, the
    exception type, the shape of its message and the frame that raised it."""
    if isinstance(exc, ContractBroken):
        return exc.key
    shape = re.sub(r"'.*|\d+", "_", str(exc).split("\n")[0])[:80]
    return f"{type(exc).__name__} ({shape}) at {crash_site(exc)[0]}"


@dataclass
class FailureLog:
    """Every distinct failure of a run, each with the shortest request that showed it. Crashes
    are told apart by exception type, message shape and the frame that raised."""

    found: dict[str, dict[str, Any]] = field(default_factory=dict)
    exceptions: dict[str, BaseException] = field(default_factory=dict)

    def add(self, exc: BaseException, sent: Request, status: int) -> None:
        key = failure_key(exc)
        last, ours = ("-", "-") if isinstance(exc, ContractBroken) else crash_site(exc)
        request = repr(sent)
        seen = self.found.setdefault(key, {"key": key, "count": 0, "request": request})
        seen["count"] += 1
        if seen["count"] == 1 or len(request) < len(seen["request"]):
            self.exceptions[key] = exc
            message = str(exc).split("\n")[0][:300]
            seen.update(
                status=status,
                error=f"{type(exc).__name__}: {message}",
                last_frame=last,
                last_lngate_frame=ours,
                request=request,
            )

    def write(self, path: str, label: str) -> None:
        with open(path, "a", encoding="utf-8") as fh:
            for entry in self.found.values():
                fh.write(json.dumps({"run": label, **entry}) + "\n")


# -- strategies: values --------------------------------------------------------------------------
#
# Hypothesis leans towards the first branch of a one_of, the first item of a sampled_from and
# towards 0: plausible values and common cases come first everywhere below.

# isdigit() is true for all of these; int() refuses the first group and reads the second
# (Unicode decimal digits: int("٣") == 3, int("𝟗") == 9).  # noqa: RUF003
UNICODE_DIGITS = ("¹", "²", "³", "①", "⁹", "₂", "፩", "𝟗", "٣", "१", "০", "１２", "߀", "٠١٢")  # noqa: RUF001
HUGE_NUMBERS = (
    "1" * 100,
    "9" * 19,
    "9" * 20,
    str(2**62),
    str(2**62 + 1),
    str(2**63 - 1),
    str(2**63),
    str(2**64),
    str(-(2**63) - 1),
    "-" + "9" * 40,
    "1" * 5000,
)
ODD_NUMBERS = (
    "0",
    "-0",
    "-1",
    "+1",
    " 1",
    "1 ",
    "01",
    "1.0",
    "1.5",
    "1e3",
    "1e309",
    "-1e309",
    "inf",
    "Infinity",
    "NaN",
    "0x10",
    "1_000",
    "1,000",
    "1\u200b",
    "\ufeff1",
)
ODD_TEXT = (
    "",
    " ",
    "\t",
    "null",
    "true",
    "[]",
    "{}",
    "\x00",
    "a\x00b",
    "\ud800",
    "\udfff",
    "\u202e",
    "\u200d",
    "\ufffd",
    "\uffff",
    "İ",
    "ß",
    "ﬃ",
    "Ａ",  # noqa: RUF001
    "e\u0301",
    "😀",
    "..",
    "%",
    "%00",
    "' OR 1=1 --",
    "lightning:",
)
LONG_SIZES = (1_000, 10_000, 60_000, 70_000)


@functools.cache
def nasty_text(extra: tuple[str, ...] = ()) -> st.SearchStrategy[str]:
    """Strings hostile to parsers: unicode digits (alone and after ASCII digits), huge and odd
    numbers, controls, surrogates and other odd text, any text, long runs; ``extra`` first."""
    kinds: list[st.SearchStrategy[str]] = [
        st.sampled_from(UNICODE_DIGITS),
        st.tuples(
            st.sampled_from(("1", "17", "1000", "9" * 12)), st.sampled_from(UNICODE_DIGITS)
        ).map("".join),
        st.sampled_from(HUGE_NUMBERS),
        st.sampled_from(ODD_NUMBERS),
        st.sampled_from(ODD_TEXT),
        st.text(max_size=40),
        st.tuples(st.sampled_from(LONG_SIZES), st.sampled_from(("a", "7", "é", "¹", "\x00"))).map(
            lambda t: t[1] * t[0]
        ),
    ]
    if extra:
        kinds.insert(0, st.sampled_from(extra))
    return st.one_of(kinds)


def utf8(text: str) -> bytes:
    """UTF-8, with lone surrogates written through (bytes that are not valid UTF-8)."""
    return text.encode("utf-8", "surrogatepass")


# -- strategies: JSON ----------------------------------------------------------------------------


class RawJson:
    """A JSON token written as is: ``1e309``, a 5,000-digit number, ``NaN``, a deep nesting."""

    def __init__(self, text: str) -> None:
        self.text = text

    def __repr__(self) -> str:
        return f"RawJson({self.text[:40]!r}{'...' if len(self.text) > 40 else ''})"


class _Missing:
    def __repr__(self) -> str:
        return "MISSING"


MISSING: Any = _Missing()  # a body field left out

RAW_TOKENS = (
    "1e309",
    "-1e309",
    "1E400",
    "1e-400",
    "-0",
    "1.0",
    "NaN",
    "Infinity",
    "-Infinity",
    "9007199254740993",
    "1" * 100,
    "1" * 5000,
    "[" * 5000 + "]" * 5000,
    '{"a":' * 5000 + "1" + "}" * 5000,
    "[" * 900 + "1" + "]" * 900,
)
HUGE_INTS = (2**64, -(2**64), 10**100, -(10**100), 2**63, 2**63 - 1, 2**62 + 1, -(2**63) - 1)

JsonValue = Any

JSON_SCALARS: st.SearchStrategy[JsonValue] = st.one_of(
    nasty_text(),
    st.integers(),
    st.sampled_from(HUGE_INTS),
    st.sampled_from(RAW_TOKENS).map(RawJson),
    st.floats(),
    st.none(),
    st.booleans(),
)
JSON_VALUES: st.SearchStrategy[JsonValue] = st.recursive(
    JSON_SCALARS,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=8,
)
# What goes wrong in a field: the wrong type, a hostile string or number, a raw token, or
# nothing at all.
HOSTILE_FIELD: st.SearchStrategy[JsonValue] = st.one_of(
    nasty_text(),
    st.sampled_from(HUGE_INTS),
    st.sampled_from(RAW_TOKENS).map(RawJson),
    st.just(MISSING),
    JSON_VALUES,
)


def to_json(value: JsonValue, *, ascii_only: bool = True) -> str:
    """Serialise with ``RawJson`` tokens kept verbatim (and NaN/Infinity as Python writes
    them); strings may hold lone surrogates."""
    if isinstance(value, RawJson):
        return value.text
    if isinstance(value, dict):
        items = (
            f"{json.dumps(str(k), ensure_ascii=ascii_only)}:{to_json(v, ascii_only=ascii_only)}"
            for k, v in value.items()
        )
        return "{" + ",".join(items) + "}"
    if isinstance(value, list | tuple):
        return "[" + ",".join(to_json(v, ascii_only=ascii_only) for v in value) + "]"
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return json.dumps(value, ensure_ascii=ascii_only)


# -- strategies: the wire ------------------------------------------------------------------------

BAD_ESCAPES = ("%", "%z", "%zz", "%G0", "%FF", "%C3", "%C3%28", "%ED%A0%80", "%E2%82", "%00", "%%")
VISIBLE_ASCII = "".join(chr(c) for c in range(0x21, 0x7F))
TOKEN_CHARS = "abcdefghijklmnopqrstuvwxyz0123456789-_!#$%&'*+.^`|~"


def percent_encoded(values: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    """A string as it goes into a target: percent-encoded (UTF-8, surrogates passed through),
    or with an invalid escape spliced in."""
    encoded = values.map(lambda s: quote(utf8(s), safe=""))
    spliced = st.tuples(encoded, st.sampled_from(BAD_ESCAPES), st.integers(0, 64)).map(
        lambda t: t[0][: t[2]] + t[1] + t[0][t[2] :]
    )
    return st.one_of(encoded, encoded, spliced)


def header_value(text: str) -> bytes:
    """What a client puts on the wire for ``text``: Latin-1 when it fits (so '¹' is b'\\xb9',
    which Starlette reads back as '¹'), else UTF-8; then what h11 lets through of it."""
    try:
        raw = text.encode("latin-1")
    except UnicodeEncodeError:
        raw = utf8(text)
    return sanitize_header(raw)


def sanitize_header(raw: bytes) -> bytes:
    """h11's field-value: no controls but tab, no leading or trailing whitespace (obs-text,
    bytes 0x80-0xFF, is allowed)."""
    return bytes(b for b in raw if b == 0x09 or 0x20 <= b <= 0x7E or b >= 0x80).strip(b" \t")


# The unicode digits a header can carry: Starlette decodes header bytes as Latin-1, where
# only these three are digits (b"\xb9" is "¹"); other scripts' digits arrive as mojibake.
LATIN1_DIGITS = ("¹", "²", "³")


@functools.cache
def header_values(extra: tuple[str, ...] = ()) -> st.SearchStrategy[bytes]:
    kinds = [
        st.tuples(st.sampled_from(("", "1", "17", "1000")), st.sampled_from(LATIN1_DIGITS))
        .map("".join)
        .map(header_value),
        nasty_text().map(header_value),
        st.binary(max_size=24).map(sanitize_header),
    ]
    if extra:
        kinds.insert(0, st.sampled_from(extra).map(header_value))
    return st.one_of(kinds)


CONTENT_TYPES = (
    "application/json; charset=utf-8",
    "application/json; charset=latin-1",
    "application/problem+json",
    "text/plain",
    "application/x-www-form-urlencoded",
    "multipart/form-data; boundary=xyz",
    "application/",
    ";;;",
    "application/json; charset=\xff",
)


def _mangle_body(b: bytes, how: int, pos: int) -> bytes:
    i = pos % (len(b) + 1)
    return [
        b[:i] + b"\xff" + b[i:],  # a byte that is never UTF-8
        b[:i] + b"\xc3" + b[i:],  # a truncated sequence
        b"\xef\xbb\xbf" + b,  # a UTF-8 byte order mark
        b.decode("utf-8", "surrogatepass").encode("utf-16", "surrogatepass"),
        b.decode("utf-8", "replace").encode("cp1252", "replace"),
        b + b"garbage",
        b[:i],  # cut short
        b + b"\x00",
    ][how]


def _mangle_path(path: str, how: int) -> str:
    return [
        path + "/",
        path.upper(),
        "/" + path,
        path.replace("/", "/./", 1),
        path + "%2F",
        path + "/x",
        path.replace("/", "//", 2),
    ][how]


# -- strategies: requests ------------------------------------------------------------------------


@dataclass(frozen=True)
class Pools:
    """Plausible values, by name, for what the routes read; ``hostile_fields`` adds hostile
    values of its own to a body field (amounts: 2**64 and such). A name not listed gets
    generic values, so a new route or parameter is fuzzed too."""

    segments: tuple[str, ...]
    queries: Mapping[str, tuple[str, ...]]
    headers: Mapping[str, tuple[str, ...]]
    fields: Mapping[str, st.SearchStrategy[JsonValue]]
    hostile_fields: Mapping[str, st.SearchStrategy[JsonValue]]
    base_fields: Mapping[str, JsonValue]  # the sweep's body: these, and "x" for other required


Parts = tuple[bytes, bytes, Headers, bytes]  # raw path, query, headers, body


def aimed_at(route: Route, pools: Pools) -> st.SearchStrategy[Parts]:
    """Requests for ``route``: every parameter, header and body field plausible but one or two
    (sometimes none, sometimes three) that are hostile; and one time in three, besides, a
    broken body (deep, huge, not UTF-8, not JSON), a hostile content type, a mangled path, junk
    in the query string or stray headers."""
    slots = [
        *(("path", n) for n in route.path_params),
        *(("query", n) for n in route.query_params),
        *(("header", n.lower()) for n in route.header_params),
        *(("field", n) for n in route.body_fields),
    ]
    generic_query = ("1", "x")

    def plausible(kind: str, name: str) -> st.SearchStrategy[Any]:
        if kind == "path":
            return st.one_of(st.sampled_from(pools.segments), st.uuids().map(str)).map(
                lambda s: quote(s, safe="")
            )
        if kind == "query":
            values = pools.queries.get(name, generic_query)
            return st.sampled_from(values).map(lambda s: quote(s, safe=""))
        if kind == "header":
            return st.sampled_from(pools.headers.get(name, ("x",))).map(header_value)
        return pools.fields.get(name, JSON_SCALARS)

    def hostile(kind: str, name: str) -> st.SearchStrategy[Any]:
        if kind in ("path", "query"):
            return percent_encoded(nasty_text())
        if kind == "header":
            return header_values()
        extra = pools.hostile_fields.get(name)
        return HOSTILE_FIELD if extra is None else st.one_of(extra, HOSTILE_FIELD)

    good = {s: plausible(*s) for s in slots}
    bad = {s: hostile(*s) for s in slots}
    n_hostile = st.sampled_from((1, 2, 0, 3))
    # the template in pieces: literal, parameter name, literal, ... ("{id:int}" is named "id")
    base = tuple(
        p.split(":")[0] if i % 2 else p
        for i, p in enumerate(route.path.replace("{", "}").split("}"))
    )

    @st.composite
    def parts(draw: st.DrawFn) -> Parts:
        count = min(draw(n_hostile), len(slots))
        chosen = set()
        if slots:
            picked = st.lists(st.sampled_from(slots), min_size=count, max_size=count, unique=True)
            chosen = set(draw(picked))

        def value(slot: tuple[str, str], optional: bool) -> Any:
            if slot in chosen:
                return draw(bad[slot])
            if optional and draw(st.integers(0, 3)) == 3:
                return MISSING
            return draw(good[slot])

        path = "".join(
            piece if i % 2 == 0 else value(("path", piece), False) for i, piece in enumerate(base)
        )
        query = []
        for name in route.query_params:
            v = value(("query", name), True)
            if v is not MISSING:
                query.append(f"{quote(name, safe='')}={v}")
        headers = []
        for name in route.header_params:
            v = value(("header", name.lower()), True)
            if v is not MISSING:
                headers.append((name.lower().encode(), v))
        body = b""
        if route.has_body:
            doc = {}
            for name in route.body_fields:
                v = value(("field", name), name not in route.required_fields)
                if v is not MISSING:
                    doc[name] = v
            if draw(st.integers(0, 5)) == 5:  # a field the model does not have
                doc[draw(nasty_text(("extra", route.body_fields[0].upper())))] = draw(JSON_SCALARS)
            body = utf8(to_json(doc, ascii_only=draw(st.booleans())))
            headers.insert(0, (b"content-type", b"application/json"))
        path, query, headers, body = draw(broken(route, path, query, headers, body))
        return path.encode("ascii"), "&".join(query).encode("ascii"), tuple(headers), body

    return parts()


def broken(
    route: Route, path: str, query: list[str], headers: list[tuple[bytes, bytes]], body: bytes
) -> st.SearchStrategy[tuple[str, list[str], list[tuple[bytes, bytes]], bytes]]:
    """The request as it is (two times in three), or broken in one more way."""
    fields = route.body_fields or ("x",)
    others = headers[1:] if route.has_body else headers  # without the JSON content type
    nested = b"[" * 5000 + b"]" * 5000
    big_bodies = (
        nested,
        b'{"a":' * 5000 + b"1" + b"}" * 5000,
        *(f'{{"{name}":'.encode() + nested + b"}" for name in fields),
        b"[" * 1000 + b"]" * 1000,
        b"[" + b"1," * 20_000 + b"1]",
        b'{"memo":"' + b"a" * 60_000 + b'"}',
        b'{"memo":"' + b"a" * 100_000 + b'"}',
    )
    ways: list[st.SearchStrategy[Any]] = [
        st.just((path, query, headers, body)),
        # the body: mangled bytes, something big, any JSON, raw bytes, nothing
        st.tuples(st.integers(0, 7), st.integers(0, 10_000)).map(
            lambda t: (path, query, headers, _mangle_body(body or b"{}", *t))
        ),
        st.sampled_from(big_bodies).map(lambda b: (path, query, headers, b)),
        st.tuples(JSON_VALUES, st.booleans()).map(
            lambda t: (path, query, headers, utf8(to_json(t[0], ascii_only=t[1])))
        ),
        st.binary(max_size=64).map(lambda b: (path, query, headers, b)),
        # the content type: hostile, or none
        st.one_of(st.sampled_from(CONTENT_TYPES).map(header_value), header_values()).map(
            lambda ct: (path, query, [(b"content-type", ct), *others], body)
        ),
        st.just((path, query, others, body)),
        # the target: a mangled path, junk or a repeated parameter in the query
        st.integers(0, 6).map(lambda i: (_mangle_path(path, i), query, headers, body)),
        st.text(VISIBLE_ASCII.replace("#", ""), max_size=30).map(
            lambda q: (path, [*query, q], headers, body)
        ),
        st.tuples(
            st.sampled_from((*route.query_params, "amount")), percent_encoded(nasty_text())
        ).map(lambda t: (path, [*query, f"{t[0]}={t[1]}"], headers, body)),
        # stray headers: a second copy of one the route reads, or any other
        st.lists(
            st.tuples(
                st.one_of(
                    st.sampled_from(
                        (*(h.lower() for h in route.header_params), "x-request-id", "host")
                    ),
                    st.text(TOKEN_CHARS, min_size=1, max_size=12),
                ).map(str.encode),
                header_values(),
            ),
            min_size=1,
            max_size=3,
        ).map(lambda hs: (path, query, [*headers, *hs], body)),
    ]
    return st.integers(0, 2).flatmap(lambda n: ways[0] if n < 2 else st.one_of(ways[1:]))


def anywhere() -> st.SearchStrategy[Parts]:
    """Requests for no route in particular: visible ASCII targets, any headers and bodies."""
    chars = VISIBLE_ASCII.replace("?", "").replace("#", "")
    path = st.one_of(
        st.text(chars, max_size=40).map(lambda s: "/" + s),
        percent_encoded(st.text(max_size=10)).map(lambda s: "/v1/" + s),
        st.sampled_from(("/", "//", "/v1/", "/admin", "/%2e%2e/v1/account", "/.well-known/")),
    )
    query = st.text(VISIBLE_ASCII.replace("#", ""), max_size=20)
    headers = st.lists(
        st.tuples(st.text(TOKEN_CHARS, min_size=1, max_size=12).map(str.encode), header_values()),
        max_size=3,
    )
    body = st.one_of(st.just(b""), st.binary(max_size=64))
    return st.tuples(path, query, headers, body).map(
        lambda t: (t[0].encode("ascii"), t[1].encode("ascii"), tuple(t[2]), t[3])
    )


# -- the sweep -----------------------------------------------------------------------------------
#
# Before the random search, a fixed sweep: a plausible request per route, and then that request
# with one thing (a path parameter, a query parameter, a header, a body field, the body) made
# hostile in each of the ways below. Cheap, the same on every run, and it finds one-input bugs
# whatever the random search happens to draw.

SWEEP_TARGET = (
    "%C2%B9",  # ¹: isdigit() but not int()
    "1%E2%91%A0",  # 1①
    "%D9%A3",  # ٣: a decimal digit int() reads
    "1" * 5000,
    str(2**64),
    "-1",
    "1e309",
    "%00",
    "%ED%A0%80",  # a UTF-8-encoded surrogate
    "%FF",
    "%zz",
    "",
)
SWEEP_HEADER = (b"\xb9", b"1\xb9", b"1" * 5000, str(2**64).encode(), b"-1", b"\xff\xfe", b"")
SWEEP_FIELD: tuple[JsonValue, ...] = (
    "¹",
    "1¹",
    2**64,
    -1,
    0,
    1.5,
    True,
    None,
    [],
    {},
    "\x00",
    "\ud800",
    "x" * 70_000,
    RawJson("1e309"),
    RawJson("1" * 5000),
    RawJson("[" * 5000 + "]" * 5000),
    MISSING,
)
SWEEP_BODY = (
    b"",
    b"\xff",
    b'{"a": "\xff"}',
    b"[]",
    b'"x"',
    b"null",
    b"[" * 5000 + b"]" * 5000,
    b'{"a":' * 5000 + b"1" + b"}" * 5000,
    b'{"memo":"' + b"a" * 100_000 + b'"}',
)


def sweep(route: Route, pools: Pools) -> list[Parts]:
    """The plausible request for ``route``, then each of its variants with one thing hostile."""
    path_values = {n: quote(pools.segments[0], safe="") for n in route.path_params}
    header_values_ = {
        n.lower(): header_value(pools.headers.get(n.lower(), ("x",))[0])
        for n in route.header_params
    }
    fields = {
        n: pools.base_fields.get(n, "x")
        for n in route.body_fields
        if n in pools.base_fields or n in route.required_fields
    }

    def build(
        path: dict[str, str],
        query: dict[str, str],
        headers: dict[str, bytes],
        doc: dict[str, JsonValue],
        body: bytes | None = None,
    ) -> Parts:
        target = re.sub(r"\{(\w+)(:[^}]*)?\}", lambda m: path[m.group(1)], route.path)
        hs = [(n.encode(), v) for n, v in headers.items()]
        if route.has_body:
            hs.insert(0, (b"content-type", b"application/json"))
            if body is None:
                body = utf8(to_json({k: v for k, v in doc.items() if v is not MISSING}))
        return (
            target.encode("ascii"),
            "&".join(f"{k}={v}" for k, v in query.items()).encode("ascii"),
            tuple(hs),
            body or b"",
        )

    out = [build(path_values, {}, header_values_, fields)]
    for name in route.path_params:
        out += [build({**path_values, name: v}, {}, header_values_, fields) for v in SWEEP_TARGET]
    for name in route.query_params:
        out += [build(path_values, {name: v}, header_values_, fields) for v in SWEEP_TARGET]
    for name in {n.lower() for n in route.header_params}:
        out += [build(path_values, {}, {**header_values_, name: v}, fields) for v in SWEEP_HEADER]
    for name in route.body_fields:
        out += [build(path_values, {}, header_values_, {**fields, name: v}) for v in SWEEP_FIELD]
    if route.has_body:
        out += [build(path_values, {}, header_values_, fields, body) for body in SWEEP_BODY]
    return out
