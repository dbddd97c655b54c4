"""The end of a function's cold start: the cyclic garbage collector, off during the imports, back on after them.

Every function's module starts with ``import gc`` and ``gc.disable()``, before any other import, and calls
:func:`imports_done` once its module-level objects exist. The imports build some 80,000 objects (pydantic's
schemas, botocore, Powertools) that live as long as the container and are not garbage; with the collector on, each
full collection during the imports scans all of them again: about 45 ms of the callback's cold start on
Python 3.13 (``python -m bench.cold_start``). Frozen, they also stay out of every later collection.
tests/unit/test_coldstart.py checks that every function does both, and that the collector ends up on.
"""

from __future__ import annotations

import gc

__all__ = ["imports_done"]


def imports_done() -> None:
    """Move everything alive now out of the collector's reach and turn the collector back on: it must not stay off
    in a container that serves for hours (cycles made by requests would never be freed)."""
    gc.freeze()
    gc.enable()
