"""Secrets of the local stack that change without a restart: ``.local/secrets.json``.

In AWS the functions read the JSON secret ``taobao-bridge/<stage>`` from Secrets Manager. Locally the same keys
live in ``.local/secrets.json`` (git-ignored)::

    {"qimen_app_secret": "...", "top_app_key": "...", "top_app_secret": "...", "top_session_key": "..."}

The local stack looks at the file before every invocation (one ``stat``; it is read again only when it changed)
and puts its values in the environment the functions read (``taobao_bridge.settings``: an environment variable
beats the secret), so the next invocation uses a new session key. On the local stack the file beats the
environment ``make run`` started with, which beats the local defaults; a key removed from the file falls back.
Any key may be left out. Values never reach the log, only key names.

    .venv/bin/python -m bridge_local secrets set top_session_key NEWVALUE
    .venv/bin/python -m bridge_local secrets set top_app_secret -      # the value from stdin, not shell history
    .venv/bin/python -m bridge_local secrets unset top_session_key
    .venv/bin/python -m bridge_local secrets show                      # masked
"""

from __future__ import annotations

import json
import logging
import os
import threading
from collections.abc import Callable, Mapping
from pathlib import Path

from taobao_bridge.settings import SECRET_KEYS

__all__ = [
    "SECRETS_FILE",
    "SecretsFileError",
    "SecretsWatcher",
    "mask",
    "read_secrets",
    "write_secret",
]

log = logging.getLogger("bridge_local")

SECRETS_FILE = Path(__file__).resolve().parent.parent / ".local" / "secrets.json"
ENV_BY_KEY = {key: env for env, key in SECRET_KEYS.items()}  # "top_session_key" -> "TOP_SESSION_KEY"


class SecretsFileError(ValueError):
    """The secrets file is not a JSON object of known keys with string values."""


def read_secrets(path: Path) -> dict[str, str]:
    """The file's values by secret key (``top_session_key``...); empty if there is no file."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return {}
    try:
        data = json.loads(text) if text.strip() else {}
    except ValueError as exc:
        raise SecretsFileError(f"{path}: not JSON ({exc})") from None
    if not isinstance(data, dict):
        raise SecretsFileError(f"{path}: must hold a JSON object")
    unknown = sorted(set(data) - set(ENV_BY_KEY))
    if unknown:
        raise SecretsFileError(f"{path}: unknown keys {', '.join(unknown)} (known: {', '.join(sorted(ENV_BY_KEY))})")
    wrong = sorted(key for key, value in data.items() if not isinstance(value, str))
    if wrong:
        raise SecretsFileError(f"{path}: values must be strings: {', '.join(wrong)}")
    return {key: value for key, value in data.items() if value}


def write_secret(path: Path, key: str, value: str | None) -> dict[str, str]:
    """Set (or with ``None`` remove) one key; the file is replaced atomically, readable by its owner only."""
    if key not in ENV_BY_KEY:
        raise SecretsFileError(f"unknown key {key!r} (known: {', '.join(sorted(ENV_BY_KEY))})")
    values = read_secrets(path)
    if value is None:
        values.pop(key, None)
    else:
        values[key] = value
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.tmp")
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w", encoding="utf-8") as out:
        json.dump(dict(sorted(values.items())), out, indent=2)
        out.write("\n")
    os.replace(temporary, path)
    return values


def mask(value: str) -> str:
    """Enough of a secret to tell two apart, not enough to use it."""
    return value[:2] + "…" + value[-2:] if len(value) > 8 else "…"


class SecretsWatcher:
    """Applies the secrets file to ``os.environ`` whenever it changed; ``apply()`` before each invocation.

    ``base`` maps environment names (``TOP_SESSION_KEY``) to the values the stack started with; they apply to
    keys the file leaves out. ``on_change`` gets the environment names and values in effect after a change (not
    on the first ``apply()``, which the stack makes at start).
    """

    def __init__(
        self,
        path: Path,
        base: Mapping[str, str],
        on_change: Callable[[dict[str, str]], None] | None = None,
    ) -> None:
        self.path = path
        self.base = dict(base)
        self.on_change = on_change
        self._lock = threading.Lock()
        self._signature: tuple[int, int, int] | str | None = "unread"
        self._effective: dict[str, str] = {}

    @property
    def effective(self) -> dict[str, str]:
        """Environment name -> value in effect for the four secret settings (those that have one)."""
        return dict(self._effective)

    def apply(self) -> bool:
        """Re-read the file if it changed and update the environment; returns whether any value changed."""
        signature = self._stat()
        if signature == self._signature:
            return False
        with self._lock:
            if signature == self._signature:
                return False
            try:
                values = read_secrets(self.path)
            except (SecretsFileError, OSError) as exc:
                self._signature = signature  # say it once per version of the file
                log.error("ignoring %s until it is fixed, keeping the secrets in effect: %s", self.path, exc)
                return False
            effective = dict(self.base)
            effective.update({ENV_BY_KEY[key]: value for key, value in values.items()})
            changed = sorted(name for name in ENV_BY_KEY.values() if effective.get(name) != self._effective.get(name))
            for name in ENV_BY_KEY.values():
                if name in effective:
                    os.environ[name] = effective[name]
                else:
                    os.environ.pop(name, None)  # the package falls back to its local defaults
            first = self._signature == "unread"
            self._signature = signature
            self._effective = effective
        if changed and not first:
            keys = ", ".join(SECRET_KEYS[name] for name in changed)
            log.info("secrets changed (%s): the next invocations use them", keys)
            if self.on_change is not None:
                self.on_change(dict(effective))
        return bool(changed)

    def _stat(self) -> tuple[int, int, int] | None:
        try:
            found = os.stat(self.path)
        except FileNotFoundError:
            return None
        return (found.st_mtime_ns, found.st_size, found.st_ino)
