"""How the local stack runs a function: as Lambda does, one invocation at a time per instance.

Lambda gives each execution environment (instance) one event at a time and starts another instance when all
are busy, up to the function's concurrency. Handler modules rely on that: their module-level objects (the
Powertools resolver ``app``, its routes' context, the logger's keys) hold one invocation's state at a time, so two
requests sharing one loaded module can be processed with each other's event. The local stack runs requests on
threads, so here each function has a ``FunctionPool``: up to ``max_instances`` independently loaded copies of its
handler module (``template.load_function_instance``), each serving one invocation at a time. A request that finds
every instance busy waits for one (Lambda would start another or throttle); a function with
``ReservedConcurrentExecutions`` in template.yaml never runs more instances than that.

Loading a module twice is not enough, because Powertools keeps some per-invocation state process-wide, which
in Lambda is the same thing as per instance:

- the event handler's ``resolve`` stores the current event and context on the *class* ``BaseRouter``, shared
  by every resolver of every function in the process (an intake request could read a concurrent Qimen call's
  body); ``isolate_resolver`` makes each loaded resolver keep them on itself, where its routes read them;
- ``Metrics`` keeps metrics, dimensions and metadata in class attributes shared by every instance and flushes
  (serialises, prints, clears) them at the end of each invocation, so concurrent invocations would flush each
  other's metrics and iterate a dict another thread inserts into; ``isolate_metrics`` gives each loaded
  instance sets of its own.

Both are applied to every instance the pool loads. The Powertools ``Logger`` formatter stays shared by every
logger of the service: a log line may show another concurrent invocation's request id, which affects only logs.
"""

from __future__ import annotations

import itertools
import logging
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

from .template import load_function_instance

__all__ = ["DEFAULT_MAX_INSTANCES", "FunctionInstance", "FunctionPool", "isolate_metrics", "isolate_resolver"]

log = logging.getLogger("bridge_local")

# Loading a handler module creates Powertools objects that configure process-wide state on first use (the
# service's logging handler and formatter): two loads at once can leave a logger whose handler has no formatter
# yet. Cold starts are rare, so they take turns.
_LOAD_LOCK = threading.Lock()

# Instances per function when the template reserves no concurrency. moto answers one request at a time and the
# handlers hold the GIL most of the time, so more would add memory and cold starts, not throughput.
DEFAULT_MAX_INSTANCES = 4


def isolate_metrics(module: ModuleType) -> int:
    """Give every Powertools ``Metrics`` object created by ``module`` metric sets of its own; returns how many.

    ``Metrics`` shares ``_metrics``/``_dimensions``/``_metadata`` between all its instances in a process (one
    Lambda process serves one invocation at a time); the provider reads and clears these dicts on flush.
    """
    try:
        from aws_lambda_powertools.metrics import Metrics
    except ImportError:  # pragma: no cover - every function uses Powertools
        return 0
    isolated = 0
    for value in list(vars(module).values()):
        if not isinstance(value, Metrics):
            continue
        provider = value.provider
        if not all(hasattr(provider, name) for name in ("metric_set", "dimension_set", "metadata_set")):
            log.warning("Powertools Metrics changed shape: metrics of concurrent invocations may mix")
            continue
        metric_set: dict[str, Any] = {}
        dimension_set: dict[str, str] = dict(provider.dimension_set)  # the default dimensions it started with
        metadata_set: dict[str, Any] = {}
        provider.metric_set, provider.dimension_set, provider.metadata_set = metric_set, dimension_set, metadata_set
        value.metric_set, value.dimension_set, value.metadata_set = metric_set, dimension_set, metadata_set
        isolated += 1
    return isolated


def isolate_resolver(module: ModuleType) -> int:
    """Make every Powertools event-handler resolver created by ``module`` keep the current event and Lambda
    context on itself instead of on the shared ``BaseRouter`` class; returns how many.

    ``resolve`` assigns ``BaseRouter.current_event`` and ``BaseRouter.lambda_context``; the resolver and its
    routes read ``self.current_event`` / ``app.current_event``, which an attribute of the instance shadows.
    The wrappers are set on the instance, so nothing changes for resolvers loaded any other way.
    """
    try:
        from aws_lambda_powertools.event_handler.api_gateway import ApiGatewayResolver
    except ImportError:  # pragma: no cover - every HTTP function uses Powertools
        return 0
    isolated = 0
    for value in list(vars(module).values()):
        if not isinstance(value, ApiGatewayResolver):
            continue
        if not callable(getattr(value, "_to_proxy_event", None)):
            log.warning("Powertools resolver changed shape: concurrent requests may see each other's events")
            continue
        _keep_event_on_instance(value)
        isolated += 1
    return isolated


def _keep_event_on_instance(resolver: Any) -> None:
    to_proxy_event = resolver._to_proxy_event
    resolve = resolver.resolve

    def own_proxy_event(event: dict[str, Any]) -> Any:
        proxy = to_proxy_event(event)
        resolver.__dict__["current_event"] = proxy  # shadows BaseRouter.current_event for this resolver
        return proxy

    def own_resolve(event: dict[str, Any], context: Any) -> Any:
        resolver.__dict__["lambda_context"] = context
        try:
            return resolve(event, context)
        finally:
            # Nothing of this request outlives it (Lambda's next event replaces them anyway).
            resolver.__dict__.pop("current_event", None)
            resolver.__dict__.pop("lambda_context", None)

    resolver._to_proxy_event = own_proxy_event
    resolver.resolve = own_resolve


@dataclass
class FunctionInstance:
    """One loaded copy of a function's handler module: an "execution environment"."""

    name: str
    module: ModuleType
    handler: Callable[..., Any]
    invocations: int = 0


@dataclass
class FunctionPool:
    """The instances of one function. ``invoke`` runs an event on an idle instance (loading one if the limit
    allows, else waiting for one), so no instance ever serves two invocations at once."""

    function_id: str
    code_uri: str
    handler: str
    project_root: Path
    max_instances: int = DEFAULT_MAX_INSTANCES
    _idle: list[FunctionInstance] = field(default_factory=list, init=False, repr=False)
    _started: int = field(default=0, init=False)
    _numbers: Iterator[int] = field(default_factory=lambda: itertools.count(1), init=False, repr=False)
    _changed: threading.Condition = field(default_factory=threading.Condition, init=False, repr=False)

    def __post_init__(self) -> None:
        if self.max_instances < 1:
            raise ValueError(f"{self.function_id}: max_instances must be >= 1")

    @property
    def instances(self) -> int:
        """How many instances are loaded (idle or busy)."""
        return self._started

    def invoke(self, event: Any, context: Callable[[], Any]) -> Any:
        """Run ``event`` on one instance; ``context()`` builds the Lambda context once the instance is ready, so
        its clock does not count the wait for a busy instance."""
        with self.instance() as instance:
            return instance.handler(event, context())

    @contextmanager
    def instance(self) -> Iterator[FunctionInstance]:
        """An instance for one invocation, given back afterwards (also when the handler raises)."""
        instance = self._acquire()
        try:
            yield instance
        finally:
            instance.invocations += 1
            with self._changed:
                self._idle.append(instance)
                self._changed.notify()

    def _acquire(self) -> FunctionInstance:
        with self._changed:
            while not self._idle and self._started >= self.max_instances:
                self._changed.wait()
            if self._idle:
                return self._idle.pop()  # the most recently used: warm, as Lambda prefers
            self._started += 1  # reserve the slot; load outside the lock (a cold start takes a while)
            number = next(self._numbers)
        try:
            return self._load(number)
        except BaseException:
            with self._changed:
                self._started -= 1
                self._changed.notify()
            raise

    def _load(self, number: int) -> FunctionInstance:
        started = time.perf_counter()
        name = f"{self.function_id}-{number}"
        with _LOAD_LOCK:
            module, handler = load_function_instance(self.project_root, self.code_uri, self.handler, name)
            isolate_resolver(module)
            isolate_metrics(module)
        log.debug("%s: instance %s loaded in %.0f ms", self.function_id, name, (time.perf_counter() - started) * 1000)
        return FunctionInstance(name, module, handler)
