"""Trim the built layer's botocore to the AWS services the functions call (`make build` runs this).

    PYTHONPATH=. python3.13 -m bridge_local.layer_trim .aws-sam/build/SharedLayer/python

botocore ships the API data of every AWS service: 449 services, 28 MB of the layer's 48. The functions call three
and the X-Ray SDK a fourth (``KEPT_SERVICES``, with three more for botocore's credential chain outside Lambda), and
the rest is not only size: every botocore session lists the data directory before its first client (a ``stat`` per
file of 449 folders, twice) and parses ``endpoints.json`` (1.2 MB, every service in every partition). In a cold
start of the Qimen callback that is about 30 ms of its first call (83 -> 55 ms, ``python -m bench.cold_start``).
After the trim the layer keeps, for the kept services only, their folders (without ``examples-1.json``, which only
botocore's docs read) and their entries of ``endpoints.json``; every other file of botocore's data is untouched.

A client of any other service fails in Lambda with botocore's ``UnknownServiceError``:
tests/unit/test_layer_trim.py fails first if the code creates one, and checks that a trimmed botocore resolves the
same endpoints as a whole one. The local stack and the tests run the checkout with the virtual environment's whole
botocore, so nothing local changes. Standard library only: it runs under the build's Python 3.13, outside .venv.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

KEPT_SERVICES: dict[str, str] = {
    "dynamodb": "the outbox, fulfillment and control tables (taobao_bridge.dynamo, fulfillment_store)",
    "secretsmanager": "the platform credentials (taobao_bridge.settings)",
    "events": "FulfillmentOrderReceived on the stack's bus (taobao_bridge.fulfillment_events)",
    # In Lambda the X-Ray SDK samples locally; elsewhere its sampler polls X-Ray's rules with a botocore client.
    "xray": "the X-Ray SDK's sampling rules (outside Lambda only)",
    # Lambda hands the role's credentials over in the environment; anywhere else the layer's code may run (a
    # harness, a container) botocore's credential chain may assume a role, trade a web identity or an SSO token.
    "sts": "botocore's credential chain: assume-role and web-identity profiles (outside Lambda)",
    "sso": "botocore's credential chain: SSO profiles (outside Lambda)",
    "sso-oidc": "botocore's credential chain: SSO token refresh (outside Lambda)",
}
"""The botocore service names (``boto3.client(name)``) whose data the layer keeps, and who uses each."""

DOCS_ONLY = ("examples-1.json",)
"""Files of a kept service that botocore reads only to write documentation."""


class TrimError(Exception):
    """The directory is not a built layer's ``python`` folder with botocore in it."""


@dataclass(frozen=True)
class TrimReport:
    services_removed: int
    services_kept: tuple[str, ...]
    bytes_before: int
    bytes_after: int

    def summary(self) -> str:
        return (
            f"botocore data trimmed to {', '.join(self.services_kept)}: {self.services_removed} services removed, "
            f"{self.bytes_before / 1e6:.1f} MB -> {self.bytes_after / 1e6:.1f} MB"
        )


def _size(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def trim_endpoints(document: dict, keep: set[str]) -> dict:
    """``endpoints.json`` with only the kept services in each partition; partitions and their regions unchanged."""
    partitions = []
    for partition in document.get("partitions", []):
        services = {name: value for name, value in partition.get("services", {}).items() if name in keep}
        partitions.append({**partition, "services": services})
    return {**document, "partitions": partitions}


def trim(layer_python: Path, keep: set[str] | None = None) -> TrimReport:
    """Trim ``<layer_python>/botocore/data`` in place. Running it again changes nothing."""
    kept = set(KEPT_SERVICES if keep is None else keep)
    data = layer_python / "botocore" / "data"
    if not (data / "endpoints.json").is_file():
        raise TrimError(f"{data} is not botocore's data directory (no endpoints.json)")
    missing = sorted(name for name in kept if not (data / name).is_dir())
    if missing:
        raise TrimError(f"botocore in {layer_python} has no data for {', '.join(missing)}")
    before = _size(data)
    removed = 0
    for entry in sorted(data.iterdir()):
        if entry.is_dir() and entry.name not in kept:
            shutil.rmtree(entry)
            removed += 1
    for name in kept:
        for docs in (data / name).glob("*/*"):
            if docs.name in DOCS_ONLY:
                docs.unlink()
    endpoints = data / "endpoints.json"
    document = json.loads(endpoints.read_text(encoding="utf-8"))
    # Compact: botocore parses this file at every session's first client.
    endpoints.write_text(json.dumps(trim_endpoints(document, kept), separators=(",", ":")), encoding="utf-8")
    return TrimReport(removed, tuple(sorted(kept)), before, _size(data))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("layer_python", type=Path, help="the built layer's python folder")
    args = parser.parse_args(argv)
    try:
        report = trim(args.layer_python)
    except TrimError as exc:
        print(f"layer_trim: {exc}", file=sys.stderr)
        return 1
    print(report.summary())
    return 0


if __name__ == "__main__":
    sys.exit(main())
