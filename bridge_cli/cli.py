"""The argument tree and ``main``. ``taobao-bridge --help``; every command takes ``--json`` and the target
options (``--url``, ``--stack``/``--region``) before or after its name."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence
from typing import Any, NoReturn

from taobao_bridge.kinds import KINDS, Kind, KindSpec

from .errors import CliError, UsageError

__all__ = ["STATES", "build_parser", "kind_spec", "main", "positive_int", "scope_name"]

STATES = ("due", "dead", "unconfirmed")
RETRYABLE_STATES = ("dead", "unconfirmed")
WAITABLE_STATES = ("due", "synced", "dead", "unconfirmed")
APP_SCOPE = "app"
MAX_PAGE = 1000


class Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line naming the command's ``--help`` instead of the usage block."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{message} (see: {self.prog} --help)")


# ----------------------------------------------------------------------------------------------- argument types
def kind_spec(text: str) -> KindSpec:
    """A record kind by its path (``writeoffs``, ``risk-records``, ``external-orders``) or its name
    (``writeoff``, ``risk``, ``external_order``; ``-`` and ``_`` alike)."""
    wanted = text.strip().lower().replace("_", "-")
    for spec in KINDS.values():
        names = {spec.path, spec.kind.value.replace("_", "-"), spec.path.removesuffix("s")}
        if wanted in names:
            return spec
    known = ", ".join(spec.path for spec in KINDS.values())
    raise argparse.ArgumentTypeError(f"unknown kind {text!r}: one of {known} (or writeoff, risk, external_order)")


def scope_name(text: str) -> str:
    """A ban scope: ``app`` (the app's daily quota) or a kind, as the API names it (``external_order``)."""
    if text.strip().lower() == APP_SCOPE:
        return APP_SCOPE
    try:
        return kind_spec(text).kind.value
    except argparse.ArgumentTypeError:
        kinds = ", ".join(kind.value for kind in Kind)
        raise argparse.ArgumentTypeError(f"unknown scope {text!r}: one of {APP_SCOPE}, {kinds}") from None


def flow_kind(text: str) -> str:
    return kind_spec(text).kind.value


def positive_int(limit: int | None = None) -> Callable[[str], int]:
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
        if value < 1 or (limit is not None and value > limit):
            raise argparse.ArgumentTypeError(f"must be 1..{limit}" if limit else "must be 1 or more")
        return value

    return parse


def seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected seconds, got {text!r}") from None
    if not 0 < value <= 86400:
        raise argparse.ArgumentTypeError("must be more than 0 and at most 86400 seconds")
    return value


# ------------------------------------------------------------------------------------------------------ parser
def _global_options(parser: argparse.ArgumentParser, *, suppress: bool) -> None:
    # The same options on the top parser (with defaults) and on every command (suppressed defaults), so they
    # may come before or after the command's name without one overwriting the other.
    def default(value: Any) -> Any:
        return argparse.SUPPRESS if suppress else value

    group = parser.add_argument_group("target and output")
    group.add_argument("--url", default=default(None), help="base URL of the HTTP API (default: the local stack)")
    group.add_argument("--stack", default=default(None), help="a deployed stage's CloudFormation stack name")
    group.add_argument("--region", default=default(None), help="AWS region of --stack (default: AWS_REGION)")
    group.add_argument("--sign", action="store_true", default=default(False), help="sign requests to --url with SigV4")
    group.add_argument("--json", action="store_true", default=default(False), help="machine-readable output")
    group.add_argument(
        "--timeout", type=seconds, default=default(30.0), help="seconds to wait for one answer (default 30)"
    )


def build_parser() -> Parser:
    common = Parser(add_help=False)
    _global_options(common, suppress=True)
    parser = Parser(
        prog="taobao-bridge",
        description="Operate taobao-bridge: orders, records, flows, intake and Qimen calls (docs/OPERATIONS.md).",
        epilog="Target: the local stack (http://127.0.0.1:$PORT, PORT=3000) unless --url or --stack is given.",
    )
    _global_options(parser, suppress=False)
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND", parser_class=Parser)

    def command(group: Any, name: str, handler: str, help_text: str) -> Parser:
        sub: Parser = group.add_parser(name, help=help_text, description=help_text, parents=[common])
        sub.set_defaults(handler=handler)
        return sub

    def group_of(name: str, help_text: str) -> Any:
        sub = commands.add_parser(name, help=help_text, description=help_text)
        return sub.add_subparsers(dest="action", required=True, metavar="ACTION", parser_class=Parser)

    command(commands, "status", "ops:status", "records per kind and state, pauses and bans (GET /v1/ops/status)")

    orders = group_of("orders", "fulfillment orders the Qimen callback stored")
    get = command(orders, "get", "orders:get", "one order by its fulfillment_order_no")
    get.add_argument("order_no", metavar="NO", help="fulfillment_order_no")
    get.add_argument("--include-personal", action="store_true", help="also the personal fields (as documented)")
    listing = command(orders, "list", "orders:list", "orders in the order received, from a cursor")
    listing.add_argument("--after", metavar="CURSOR", help="the 'next' cursor of an earlier page (default: start)")
    listing.add_argument("--limit", type=positive_int(MAX_PAGE), help=f"orders per page, 1..{MAX_PAGE} (100)")
    more = listing.add_mutually_exclusive_group()
    more.add_argument("--all", action="store_true", help="every page up to now")
    more.add_argument("--follow", action="store_true", help="keep polling for new orders (Ctrl-C stops)")
    listing.add_argument("--interval", type=seconds, default=5.0, help="seconds between polls with --follow (5)")

    events = group_of("events", "FulfillmentOrderReceived events")
    tail = command(events, "tail", "orders:events", "the latest events (locally: the stack's event log)")
    tail.add_argument("--limit", type=positive_int(10_000), default=20, help="how many of the latest (20)")
    tail.add_argument("--since", type=seconds, default=3600.0, help="with --stack: seconds back to look (3600)")
    tail.add_argument("--follow", action="store_true", help="keep printing new events (Ctrl-C stops)")
    tail.add_argument("--interval", type=seconds, default=2.0, help="seconds between polls with --follow (2)")
    tail.add_argument("--endpoint", help="local: the stack's moto server (default http://127.0.0.1:$DYNAMODB_PORT)")

    records = group_of("records", "outbox records: list by state, show, retry")
    rlist = command(records, "list", "records:list", "records of one kind in one state")
    rlist.add_argument("kind", type=kind_spec, metavar="KIND", help="writeoffs, risk-records or external-orders")
    rlist.add_argument("--state", required=True, choices=STATES)
    rlist.add_argument("--after", metavar="CURSOR", help="the 'next' cursor of an earlier page")
    rlist.add_argument("--limit", type=positive_int(MAX_PAGE), help=f"records per page, 1..{MAX_PAGE} (100)")
    rlist.add_argument("--all", action="store_true", help="every page")
    show = command(records, "show", "records:show", "one record: state, attempts, last error, platform answer")
    show.add_argument("kind", type=kind_spec, metavar="KIND")
    show.add_argument("record_id", metavar="ID")
    show.add_argument("--wait", choices=WAITABLE_STATES, help="poll until the record is in this state")
    show.add_argument("--wait-timeout", type=seconds, default=120.0, help="give up waiting after this (120 s)")
    retry = command(records, "retry", "records:retry", "make dead or unconfirmed records due again")
    retry.add_argument("kind", type=kind_spec, metavar="KIND")
    retry.add_argument("record_ids", nargs="*", metavar="ID", help="these records (or --state for all of a state)")
    retry.add_argument("--state", choices=RETRYABLE_STATES, help="every record in this state")
    retry.add_argument("--dry-run", action="store_true", help="with --state: only count and list them")
    retry.add_argument("--limit", type=positive_int(), help="with --state: at most this many")

    submit = command(commands, "submit", "intake:submit", "send records to the intake API (replaces dead ones)")
    submit.add_argument("kind", type=kind_spec, metavar="KIND")
    submit.add_argument("file", metavar="FILE", help=".jsonl, .csv or .json; - reads JSON lines from stdin")
    submit.add_argument("--chunk-size", type=positive_int(MAX_PAGE), default=MAX_PAGE, help="records per request")

    send = command(commands, "send-qimen", "intake:qimen", "sign a fulfillment order payload and POST it as Qimen")
    send.add_argument("file", nargs="?", metavar="FILE", help="payload or events/ file (default: the seed order)")
    send.add_argument("--new-order-no", action="store_true", help="replace fulfillment_order_no with a fresh one")
    send.add_argument("--method", default="qimen.taobao.life.fulfillment.create")
    send.add_argument("--secret", help="Qimen app secret (default: the target's: local file or stack secret)")

    flows = group_of("flows", "pause, resume or unblock a kind's sync")
    pause = command(flows, "pause", "ops:pause", "stop a kind's scheduled runs until resumed")
    pause.add_argument("kind", type=flow_kind, metavar="KIND")
    pause.add_argument("--reason", required=True, help="why (shown by status)")
    resume = command(flows, "resume", "ops:resume", "undo flows pause")
    resume.add_argument("kind", type=flow_kind, metavar="KIND")
    clear = command(flows, "clear-session-pause", "ops:clear-session", "probe the session key at the next run")
    clear.add_argument("kind", type=flow_kind, metavar="KIND")

    bans = group_of("bans", "stored rate-limit bans")
    lift = command(bans, "lift", "ops:lift-ban", "lift a stored ban now")
    lift.add_argument("scope", type=scope_name, metavar="SCOPE", help="app, writeoff, risk or external_order")
    return parser


def check(args: argparse.Namespace) -> None:
    """Rules argparse cannot say."""
    if getattr(args, "handler", None) == "records:retry":
        if bool(args.record_ids) == bool(args.state):
            raise UsageError("records retry: give record IDs or --state, not both")
        if args.record_ids and (args.dry_run or args.limit):
            raise UsageError("records retry: --dry-run and --limit go with --state")


# -------------------------------------------------------------------------------------------------------- main
def handlers() -> dict[str, Callable[[argparse.Namespace, Any], int]]:
    from . import cmd_ops, cmd_orders, cmd_records, cmd_submit

    return {
        "ops:status": cmd_ops.status,
        "ops:pause": cmd_ops.pause,
        "ops:resume": cmd_ops.resume,
        "ops:clear-session": cmd_ops.clear_session_pause,
        "ops:lift-ban": cmd_ops.lift_ban,
        "orders:get": cmd_orders.get,
        "orders:list": cmd_orders.list_orders,
        "orders:events": cmd_orders.events_tail,
        "records:list": cmd_records.list_records,
        "records:show": cmd_records.show,
        "records:retry": cmd_records.retry,
        "intake:submit": cmd_submit.submit,
        "intake:qimen": cmd_submit.send_qimen,
    }


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; every expected failure is one ``error:`` line on stderr and a non-zero status."""
    try:
        args = build_parser().parse_args(argv)
        check(args)
        from .api import OpsApi
        from .target import resolve_target

        target = resolve_target(url=args.url, stack=args.stack, region=args.region, sign=args.sign)
        api = OpsApi(target, target.client(timeout=args.timeout))
        try:
            return handlers()[args.handler](args, api)
        finally:
            api.close()
    except CliError as exc:
        _error(str(exc))
        return exc.exit_code
    except KeyboardInterrupt:
        _error("interrupted")
        return 130
    except BrokenPipeError:  # `taobao-bridge … | head`: the reader left; nothing to say
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    except Exception as exc:  # the last resort: one line, not a traceback
        if os.environ.get("TAOBAO_BRIDGE_DEBUG"):
            raise
        _error(f"internal error: {type(exc).__name__}: {exc} (TAOBAO_BRIDGE_DEBUG=1 shows the traceback)")
        return 1


def _error(text: str) -> None:
    line = " ".join(text.split())
    print(f"error: {line if len(line) <= 500 else line[:499] + '…'}", file=sys.stderr, flush=True)
