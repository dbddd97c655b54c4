"""Command line: ``python -m bridge_local.top_sandbox --port 3001 --app-key K --app-secret S --session-key X``.

Prints the router URL on stdout once listening, then serves until SIGTERM or SIGINT.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import threading

from .apis import RISK_METHOD
from .faults import Faults, load_faults_file
from .server import TopSandbox

# The package's name, not this module's: one logger for the whole sandbox, as before it was a package.
logger = logging.getLogger("bridge_local.top_sandbox")


def main(argv: list[str] | None = None) -> int:
    env = os.environ
    parser = argparse.ArgumentParser(prog="python -m bridge_local.top_sandbox", description="Local TOP gateway")
    parser.add_argument("--port", type=int, default=int(env.get("TOP_SANDBOX_PORT") or 3001))
    # The same defaults as the local stack, so `make run` and a standalone sandbox agree out of the box.
    from taobao_bridge.settings import ENV, LOCAL_DEFAULTS

    parser.add_argument("--app-key", default=env.get(ENV.TOP_APP_KEY) or LOCAL_DEFAULTS[ENV.TOP_APP_KEY])
    parser.add_argument("--app-secret", default=env.get(ENV.TOP_APP_SECRET) or LOCAL_DEFAULTS[ENV.TOP_APP_SECRET])
    parser.add_argument("--session-key", default=env.get(ENV.TOP_SESSION_KEY) or LOCAL_DEFAULTS[ENV.TOP_SESSION_KEY])
    parser.add_argument("--faults", default=env.get("TOP_SANDBOX_FAULTS", ""), help="JSON file of initial faults")
    parser.add_argument("--log-level", default=env.get("TOP_SANDBOX_LOG_LEVEL", "INFO"))
    args = parser.parse_args(argv)
    if not args.app_key or not args.app_secret:
        parser.error("an app key and an app secret are required (--app-key/--app-secret or TOP_APP_KEY/TOP_APP_SECRET)")
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if not args.session_key:
        logger.warning("no session key configured: every call to %s will answer 27 Invalid session", RISK_METHOD)
    try:
        faults = load_faults_file(args.faults) if args.faults else Faults()
    except (OSError, ValueError) as exc:
        parser.error(f"cannot load faults from {args.faults}: {exc}")

    sandbox = TopSandbox(
        app_key=args.app_key,
        app_secret=args.app_secret,
        session_key=args.session_key,
        port=args.port,
        faults=faults,
    )
    stop = threading.Event()

    def _on_signal(signum: int, _frame: object) -> None:
        logger.info("signal %d: stopping", signum)
        stop.set()

    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGINT, _on_signal)
    sandbox.start()
    print(sandbox.url, flush=True)
    try:
        while not stop.wait(0.5):
            pass
    finally:
        sandbox.stop()
    return 0
