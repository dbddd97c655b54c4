"""A local TOP gateway (``/router/rest``) for tests and the local stack, over real HTTP.

It behaves like the real gateway described in ``docs/PROTOCOL.md``: strict system-parameter and signature
checks (the signature is recomputed over EVERY received parameter except ``sign``, empty values included, so a
client that sends an unsigned empty value gets ``25 Invalid signature`` exactly as in production), session
checks, per-API parameter checks written independently from the project's models (from the seed documents), the
success envelopes of the three outbound APIs, and fault injection (bans, daily quota, ``isp.*`` errors, HTTP 502,
timeouts with or without processing, slow answers, refused records, expired session, and answers the seeds do not
show: odd success shapes, bodies that are not JSON or cut short; see ``faults.py``).

Standard library only. Development tool: nothing here is deployed.

Usage::

    with TopSandbox(app_key="k", app_secret="s", session_key="x") as sandbox:
        ...  # point the client at sandbox.url
        sandbox.set_faults(isp_error_next=2, odd_answer_next=1)
        assert sandbox.accepted_records("tmall.car.local.service.order.writeoff.sync")
        assert sandbox.calls()[-1].processed  # and .faults, .tag (the X-Sandbox-Tag header), .sent_records()

Command line (``__main__.py`` and ``cli.py``):
``python -m bridge_local.top_sandbox --port 3001 --app-key K --app-secret S --session-key X``
(defaults from ``TOP_APP_KEY``, ``TOP_APP_SECRET``, ``TOP_SESSION_KEY`` or else the local stack's defaults, and
``TOP_SANDBOX_PORT``; initial faults from the JSON file named by ``TOP_SANDBOX_FAULTS`` or ``--faults``).

The rooms: ``faults.py`` (the injectable faults), ``apis.py`` (the three APIs as a table: parameter, record
layout and schema, batch limit, session, success and refusal answers), ``schema.py`` (record field checks),
``errors.py`` (the error answer as an exception), ``gateway.py`` (system parameters, signature, faults and
dispatch through the table, without a socket), ``reply.py`` (JSON/XML documents), ``server.py`` (``TopSandbox``:
the gateway over HTTP, with the admin endpoints). Only the names below are the package's public face.
"""

from __future__ import annotations

from .apis import EXTERNAL_ORDER_METHOD, RISK_METHOD, WRITEOFF_METHOD, order_id_for, response_key
from .cli import main
from .faults import ODD_SHAPES, Faults
from .gateway import RecordedCall
from .server import TopSandbox

__all__ = [
    "EXTERNAL_ORDER_METHOD",
    "ODD_SHAPES",
    "RISK_METHOD",
    "WRITEOFF_METHOD",
    "Faults",
    "RecordedCall",
    "TopSandbox",
    "main",
    "order_id_for",
    "response_key",
]
