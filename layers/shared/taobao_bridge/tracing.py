"""The handlers' Powertools Tracer, without the X-Ray SDK when tracing is switched off.

Powertools imports the X-Ray SDK's recorder for every Tracer, a disabled one included: about 20 ms of a cold
start (the SDK pulls in wrapt and asyncio). With ``POWERTOOLS_TRACE_DISABLED`` true (template parameter
``XRaySdkTracing=disabled``, the local stack) the Tracer gets a provider that records nothing instead, so the
SDK is never loaded and nothing is patched; the handlers' decorators stay the same. Lambda's own segments do not
depend on it (``Tracing: Active``).
"""

from __future__ import annotations

import os
from collections.abc import AsyncGenerator, Generator, Mapping, Sequence
from contextlib import asynccontextmanager, contextmanager
from typing import Any

from aws_lambda_powertools import Tracer
from aws_lambda_powertools.tracing.base import BaseProvider, BaseSegment

__all__ = ["TRACE_DISABLED_ENV", "NoTracing", "handler_tracer", "tracing_disabled"]

TRACE_DISABLED_ENV = "POWERTOOLS_TRACE_DISABLED"
_TRUE = frozenset({"1", "true", "t", "yes", "y", "on"})  # what Powertools' strtobool reads as true


class _NoSegment(BaseSegment):
    """A segment that keeps nothing."""

    def close(self, end_time: int | None = None) -> None:
        return None

    def add_subsegment(self, subsegment: Any) -> None:
        return None

    def remove_subsegment(self, subsegment: Any) -> None:
        return None

    def put_annotation(self, key: str, value: Any) -> None:
        return None

    def put_metadata(self, key: str, value: Any, namespace: str = "default") -> None:
        return None

    def add_exception(self, exception: BaseException, stack: Any, remote: bool = False) -> None:
        return None


class NoTracing(BaseProvider):
    """A tracing provider that records and patches nothing."""

    @contextmanager
    def in_subsegment(self, name: str | None = None, **kwargs: Any) -> Generator[BaseSegment, None, None]:
        yield _NoSegment()

    @asynccontextmanager
    async def in_subsegment_async(self, name: str | None = None, **kwargs: Any) -> AsyncGenerator[BaseSegment, None]:
        yield _NoSegment()

    def put_annotation(self, key: str, value: Any) -> None:
        return None

    def put_metadata(self, key: str, value: Any, namespace: str = "default") -> None:
        return None

    def patch(self, modules: Sequence[str]) -> None:
        return None

    def patch_all(self) -> None:
        return None


def tracing_disabled(environ: Mapping[str, str] | None = None) -> bool:
    """Whether ``POWERTOOLS_TRACE_DISABLED`` switches the X-Ray SDK off, read as Powertools reads it."""
    env = os.environ if environ is None else environ
    return env.get(TRACE_DISABLED_ENV, "").strip().lower() in _TRUE


def handler_tracer(patch_modules: Sequence[str]) -> Tracer:
    """A Tracer that patches only ``patch_modules`` (patching all would import them all), or, with tracing
    switched off, one that never loads the X-Ray SDK."""
    if tracing_disabled():
        return Tracer(patch_modules=list(patch_modules), provider=NoTracing())
    return Tracer(patch_modules=list(patch_modules))
