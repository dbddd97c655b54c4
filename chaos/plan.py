"""What a chaos run does, decided before it starts: the configuration (``ChaosConfig``), the fault classes that
can be switched on (``FaultClass``), and each round's seeded plan (``plan_round``): the TOP sandbox faults for
the round, and the sync invocations to run with their DynamoDB faults and worker fates.

Round ``n`` of seed ``s`` always gets the same plan, whatever happened in earlier rounds (its random source is
seeded with both), so a run is reproduced by its seed; thread timing can still move individual outcomes.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from bridge_local.top_sandbox import ODD_SHAPES
from bridge_local.top_sandbox.faults import REFUSE_STYLES
from taobao_bridge.kinds import KINDS, Kind

from .dynamo_faults import DynamoFaultSettings

__all__ = [
    "ALL_CLASSES",
    "PROCESSED_SHAPES",
    "ChaosConfig",
    "FaultClass",
    "InvocationPlan",
    "RoundPlan",
    "Variant",
    "odd_for_good",
    "parse_fault_classes",
    "plan_round",
]


class FaultClass(StrEnum):
    """Groups of faults, switched on with ``--faults``."""

    PLATFORM = "platform"  # sandbox: isp, unavailable, 502, timeouts, slow, bans, daily quota, session, refusals
    DYNAMODB = "dynamodb"  # throttling, connection errors, applied-then-timed-out, latency on the functions' client
    KILLS = "kills"  # workers SIGKILLed after a platform call or at their Lambda deadline; overlapping runs
    ODD = "odd"  # success answers in odd shapes, bodies that are not JSON or cut short


ALL_CLASSES = frozenset(FaultClass)


def parse_fault_classes(text: str) -> frozenset[FaultClass]:
    """``all``, ``none`` or a comma-separated list such as ``platform,odd``; ``ValueError`` names a bad one."""
    text = text.strip().lower()
    if text == "all":
        return ALL_CLASSES
    if text in ("none", ""):
        return frozenset()
    try:
        return frozenset(FaultClass(part.strip()) for part in text.split(",") if part.strip())
    except ValueError:
        raise ValueError(f"unknown fault class in {text!r}; known: all, none, {', '.join(ALL_CLASSES)}") from None


class Variant(StrEnum):
    """How one sync invocation's worker is treated."""

    NORMAL = "normal"
    KILL_AFTER_CALL = "kill_after_call"  # SIGKILL once the platform accepted a call, before settling
    STALL_SETTLE = "stall_settle"  # settling stalls past the Lambda deadline: killed there, after the call


@dataclass(frozen=True)
class ChaosConfig:
    """Everything that shapes a run. ``command()`` is the command line that reproduces it."""

    records: int = 10_000
    seed: int = 1
    faults: frozenset[FaultClass] = ALL_CLASSES
    rounds: int = 12  # chaos rounds at least; more while the merchant is still posting
    clean_rounds: int = 40  # limit of fault-free rounds at the end
    workers: int = 4  # warm worker processes ("Lambda containers")
    # Of each chaos-round invocation. moto reads due work slowly (about 2 s for 999 records once the table holds a
    # few thousand): shorter Lambdas at 10,000 records spend their whole budget reading and never call.
    lambda_timeout_s: float = 10.0
    clean_timeout_s: float = 60.0  # of each clean-round invocation
    top_timeout_s: float = 1.0  # the TOP client's HTTP timeouts in the workers (10 s in production)
    dynamo_rate: float = 0.03  # chance of a fault per DynamoDB request, with the dynamodb class
    max_attempts: int = 50  # SYNC_MAX_ATTEMPTS: high, so "dead" means refused rather than worn out
    fast_forward: bool = True  # expire leases and backoffs of finished runs instead of waiting for them
    # Post each wave while the round's runs go (True) or before they start (False). moto rolls a cancelled
    # transaction back by restoring a copy of the whole table, undoing the writes other requests made meanwhile
    # (settlements, leases): until bridge_local/moto_fixes.py stops that, overlapping intake and sync on the
    # local stack loses writes DynamoDB would keep, and shows up here as re-deliveries the bridge did not cause.
    overlap_intake: bool = False

    def command(self) -> str:
        """The command line that reproduces this run (defaults left out)."""
        parts = [".venv/bin/python -m chaos", f"--records {self.records}", f"--seed {self.seed}"]
        if self.faults != ALL_CLASSES:
            parts.append(f"--faults {','.join(sorted(self.faults)) or 'none'}")
        defaults = ChaosConfig()
        for name, flag in OPTION_FLAGS.items():
            value = getattr(self, name)
            if value != getattr(defaults, name):
                parts.append(f"{flag} {value:g}" if isinstance(value, float) else f"{flag} {value}")
        if not self.fast_forward:
            parts.append("--no-fast-forward")
        if self.overlap_intake:
            parts.append("--overlap-intake")
        return " ".join(parts)


# ChaosConfig field -> its command-line option (chaos/__main__.py), for the options that take a value.
OPTION_FLAGS = {
    "rounds": "--rounds",
    "clean_rounds": "--clean-rounds",
    "workers": "--workers",
    "lambda_timeout_s": "--lambda-timeout",
    "clean_timeout_s": "--clean-timeout",
    "top_timeout_s": "--top-timeout",
    "dynamo_rate": "--dynamo-rate",
    "max_attempts": "--max-attempts",
}


@dataclass(frozen=True)
class InvocationPlan:
    kind: Kind
    variant: Variant
    timeout_s: float
    dynamo: DynamoFaultSettings


@dataclass
class RoundPlan:
    number: int
    sandbox: dict[str, Any] = field(default_factory=dict)  # Faults fields for the round (besides the refusals)
    labels: list[str] = field(default_factory=list)  # what the round injects, for the progress line
    daily_quota: bool = False
    session_expired: bool = False
    invocations: list[InvocationPlan] = field(default_factory=list)


def _platform_faults(rng: random.Random, config: ChaosConfig, plan: RoundPlan) -> None:
    sleep_s = round(config.top_timeout_s * 1.5, 3)  # longer than the client waits: its outcome stays unknown
    menu: dict[str, dict[str, Any]] = {
        "isp": {"isp_error_next": rng.randint(1, 4)},
        "unavailable": {"service_unavailable_next": rng.randint(1, 3)},
        "http_502": {"http_500_next": rng.randint(1, 3)},
        "timeout_processed": {"timeout_next": rng.randint(1, 2), "timeout_sleep_s": sleep_s},
        "timeout_unprocessed": {"timeout_next": 1, "timeout_sleep_s": sleep_s, "timeout_processes": False},
        "slow": {"slow_ms": rng.choice([50, 150, 300])},
        "ban": {"rate_limit_next": 1, "ban_seconds": rng.randint(1, 2)},
        "daily_quota": {"daily_quota_exceeded": True},
        "session_expired": {"session_expired": True},
    }
    chosen = rng.sample(sorted(menu), rng.randint(1, 3))
    # Only one of the timeouts can hold the counter; the later one in the draw wins.
    for name in chosen:
        plan.sandbox.update(menu[name])
    plan.sandbox["refuse_style"] = rng.choice(REFUSE_STYLES)
    plan.labels += chosen
    plan.daily_quota = "daily_quota" in chosen
    plan.session_expired = "session_expired" in chosen


# A refusal shape answered to every call of an API would isolate whole batches into dead records: refusals
# come one at a time (odd_answer_next), shapes answered to every call are processed ones.
PROCESSED_SHAPES = tuple(shape for shape in ODD_SHAPES if shape not in ("success_text_false", "refusal_top_level"))


def odd_for_good(config: ChaosConfig) -> tuple[Kind, str, int] | None:
    """With the odd class: the API whose answers change shape for good (docs/PROTOCOL.md §2), the shape, and the
    round from which on it holds, through the clean rounds to the end. Drawn from the seed alone."""
    if FaultClass.ODD not in config.faults:
        return None
    rng = random.Random(f"chaos-{config.seed}-odd-for-good")
    return rng.choice(list(Kind)), rng.choice(PROCESSED_SHAPES), max(2, config.rounds // 2)


def _odd_faults(rng: random.Random, plan: RoundPlan) -> None:
    kind, shape = rng.choice(list(Kind)), rng.choice(PROCESSED_SHAPES)
    menu: dict[str, dict[str, Any]] = {
        "odd_next": {"odd_answer_next": rng.randint(1, 3)},
        "odd_map": {"odd_answer": {KINDS[kind].method: shape}},
        "not_json": {"not_json_next": 1},
        "truncated": {"truncated_next": 1},
    }
    chosen = rng.sample(sorted(menu), rng.randint(1, 2))
    for name in chosen:
        plan.sandbox.update(menu[name])
    plan.labels += [f"odd_map({kind}:{shape})" if name == "odd_map" else name for name in chosen]


def plan_round(config: ChaosConfig, number: int) -> RoundPlan:
    """Round ``number``'s faults and invocations, from the config's seed and the round number alone."""
    rng = random.Random(f"chaos-{config.seed}-round-{number}")
    plan = RoundPlan(number)
    if FaultClass.PLATFORM in config.faults:
        _platform_faults(rng, config, plan)
    if FaultClass.ODD in config.faults:
        _odd_faults(rng, plan)
    changed = odd_for_good(config)
    if changed is not None and number >= changed[2]:
        kind, shape, _ = changed
        plan.sandbox["odd_answer"] = {**plan.sandbox.get("odd_answer", {}), KINDS[kind].method: shape}
        plan.labels.append(f"odd_for_good({kind}:{shape})")
    rate = config.dynamo_rate if FaultClass.DYNAMODB in config.faults else 0.0
    kills = FaultClass.KILLS in config.faults
    for kind in Kind:
        copies = 2 if kills and rng.random() < 0.35 else 1  # overlapping runs of one kind
        for _ in range(copies):
            variant = Variant.NORMAL
            if kills:
                draw = rng.random()
                variant = Variant.KILL_AFTER_CALL if draw < 0.2 else Variant.STALL_SETTLE if draw < 0.3 else variant
            stall = variant is Variant.STALL_SETTLE
            dynamo = DynamoFaultSettings(
                rate=rate,
                seed=rng.randrange(2**31),
                stall_ops=("BatchWriteItem",) if stall else (),
                stall_s=config.lambda_timeout_s + 5 if stall else 0.0,
            )
            plan.invocations.append(InvocationPlan(kind, variant, config.lambda_timeout_s, dynamo))
    if kills:
        plan.labels += [f"{i.variant}:{i.kind}" for i in plan.invocations if i.variant is not Variant.NORMAL]
    return plan
