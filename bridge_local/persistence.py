"""Local tables that survive a restart: moto's DynamoDB items saved to a JSON file and loaded at start.

moto keeps everything in memory, so restarting ``make run`` (to change a setting, after a crash) used to erase
the outbox and the stored orders. ``StateKeeper`` writes every table's items to ``.local/dynamodb.json`` while
the stack runs (after writes, at most every ``interval_s`` seconds and never more than a tenth of the time) and
once more on a clean stop, and loads them back when the stack starts.

The file (one JSON object; one item per line, so it can be read and grepped)::

    {"format": "taobao-bridge local DynamoDB state", "version": 1, "saved_at": "2026-11-23T10:00:00Z",
     "tables": {"OutboxTable": {"definition": {...key schema, attributes, indexes...}, "count": 2,
                "items": [
    {"pk": {"S": "writeoff#..."}, ...},
    ...]}}}

Items are in DynamoDB's JSON form (``{"S": ...}``, ``{"N": "1"}``, binary base64). At start, a table whose key
schema in template.yaml still matches gets its items back (items past their TTL are left out: DynamoDB would
have deleted them); a table whose indexes or attributes changed gets the items its new definition accepts; a
table whose primary key changed starts empty. Each of these cases is one line in the log, and the old file is
kept as ``dynamodb.json.bak`` before anything is dropped.

Limits: a crash (``kill -9``) loses what was written since the last save; the file holds personal data of test
orders as the tables do (``.local/`` is git-ignored); the whole state is rewritten each time, about 1 s per
20,000 orders, without holding up requests (``moto_fixes.stored_items``); loading takes about as long.
"""

from __future__ import annotations

import base64
import json
import logging
import os
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from . import moto_fixes
from .template import dynamodb_tables, ttl_settings

__all__ = ["FORMAT", "StateKeeper", "table_definitions"]

log = logging.getLogger("bridge_local")

FORMAT = "taobao-bridge local DynamoDB state"
VERSION = 1


def _definition(kwargs: Mapping[str, Any]) -> dict[str, Any]:
    """What of a table's ``create_table`` arguments decides which items it can hold."""

    def index(entry: Mapping[str, Any]) -> dict[str, Any]:
        return {key: entry[key] for key in ("IndexName", "KeySchema", "Projection") if key in entry}

    return {
        "KeySchema": list(kwargs["KeySchema"]),
        "AttributeDefinitions": sorted(kwargs["AttributeDefinitions"], key=lambda a: a["AttributeName"]),
        "GlobalSecondaryIndexes": sorted(
            (index(i) for i in kwargs.get("GlobalSecondaryIndexes", [])), key=lambda i: i["IndexName"]
        ),
        "LocalSecondaryIndexes": sorted(
            (index(i) for i in kwargs.get("LocalSecondaryIndexes", [])), key=lambda i: i["IndexName"]
        ),
    }


def _primary_key(definition: Mapping[str, Any]) -> list[tuple[str, str, str]]:
    types = {a["AttributeName"]: a["AttributeType"] for a in definition.get("AttributeDefinitions", [])}
    return [(k["AttributeName"], k["KeyType"], types.get(k["AttributeName"], "")) for k in definition["KeySchema"]]


def table_definitions(template: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """Table name -> the definition saved with its items, from the template."""
    return {kwargs["TableName"]: _definition(kwargs) for kwargs in dynamodb_tables(template)}


def find_backend(table_names: list[str]) -> Any:
    """moto's DynamoDB backend (account and region) that holds ``table_names``."""
    from moto.dynamodb.models import dynamodb_backends

    for regions in list(dynamodb_backends.values()):
        for backend in list(regions.values()):
            if all(name in backend.tables for name in table_names):
                return backend
    raise RuntimeError(f"no moto DynamoDB backend holds the tables {', '.join(table_names)}")


@dataclass
class StateKeeper:
    """Loads the saved tables into moto at start and saves them while the stack runs."""

    path: Path
    template: Mapping[str, Any]
    interval_s: float = 5.0
    backend: Any = field(default=None, repr=False)  # moto's DynamoDB backend; found by table name if None
    _saved_generation: int = field(default=-1, init=False)
    _next_save_at: float = field(default=0.0, init=False)
    _stopping: threading.Event = field(default_factory=threading.Event, init=False, repr=False)
    _thread: threading.Thread | None = field(default=None, init=False, repr=False)
    _save_lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False)

    @property
    def backup_path(self) -> Path:
        return self.path.with_name(self.path.name + ".bak")

    # ------------------------------------------------------------------------------------------------- load
    def restore(self, *, fresh: bool = False) -> list[str]:
        """Load the saved items into the (empty) tables; returns what happened, one line per table or problem.

        ``fresh``: load nothing and keep the old file as ``.bak`` (the next save replaces it).
        """
        definitions = table_definitions(self.template)
        if self.backend is None:
            self.backend = find_backend(list(definitions))
        self._saved_generation = moto_fixes.write_generation()
        if not self.path.exists():
            return [f"no saved tables at {self._shown(self.path)}: starting empty"]
        if fresh:
            os.replace(self.path, self.backup_path)
            return [f"--fresh: starting empty; the saved tables are kept as {self._shown(self.backup_path)}"]
        try:
            state = json.loads(self.path.read_text(encoding="utf-8"))
            if not isinstance(state, dict) or state.get("format") != FORMAT or state.get("version") != VERSION:
                raise ValueError(f"not a version {VERSION} {FORMAT!r} file")
            tables = state["tables"]
        except (OSError, ValueError, KeyError, TypeError) as exc:
            os.replace(self.path, self.backup_path)
            kept = self._shown(self.backup_path)
            return [f"cannot read {self._shown(self.path)} ({exc}): starting empty; the file is kept as {kept}"]

        lines, keep_backup = [], False
        ttl = ttl_settings(self.template)
        now = int(time.time())
        for name, saved in tables.items():
            if name not in definitions:
                lines.append(f"{name}: no longer in template.yaml; its {saved.get('count', '?')} items are not loaded")
                keep_backup = True
                continue
            line, dropped = self._restore_table(name, saved, definitions[name], ttl.get(name), now)
            lines.append(line)
            keep_backup = keep_backup or dropped
        if keep_backup:
            # What was dropped is in the file until the next save: keep a copy of it.
            self.backup_path.write_bytes(self.path.read_bytes())
            lines.append(f"the file as it was is kept as {self._shown(self.backup_path)}")
        self._saved_generation = moto_fixes.write_generation()
        return lines

    def _restore_table(
        self, name: str, saved: Mapping[str, Any], definition: Mapping[str, Any], ttl_attribute: str | None, now: int
    ) -> tuple[str, bool]:
        """Load one table; returns its line and whether items that were saved are dropped."""
        from moto.dynamodb.models.dynamo_type import DynamoType, Item

        items: list[dict[str, Any]] = saved.get("items") or []
        old = saved.get("definition") or {}
        if _primary_key(old) != _primary_key(definition):
            return (
                f"{name}: its key schema in template.yaml changed since the save; starting it empty "
                f"({len(items)} saved items not loaded)",
                bool(items),
            )
        expired = [item for item in items if _expired(item, ttl_attribute, now)]
        live = [item for item in items if not _expired(item, ttl_attribute, now)]
        table = self.backend.tables[name]
        refused = 0
        with moto_fixes.DYNAMODB_LOCK:
            if old == definition:
                # Items moto saved itself under this very definition: no need to validate them again.
                for attrs in live:
                    try:
                        hash_key = DynamoType(attrs[table.hash_key_attr])
                        range_key = DynamoType(attrs[table.range_key_attr]) if table.range_key_attr else None
                    except (KeyError, TypeError):
                        refused += 1  # an item without its key: the file was edited by hand
                        continue
                    item = Item(hash_key, range_key, attrs)
                    if range_key is None:
                        table.items[hash_key] = item
                    else:
                        table.items[hash_key][range_key] = item
            else:
                for attrs in live:
                    try:
                        table.put_item(attrs)
                    except Exception:  # moto's validation errors have no common base class
                        refused += 1
        line = f"{name}: {len(live) - refused} items loaded"
        if expired:
            line += f", {len(expired)} past their TTL left out"
        if old != definition:
            line += " (its indexes or attributes changed in template.yaml"
            line += f"; {refused} items did not fit and were dropped)" if refused else "; every item still fits)"
        elif refused:
            line += f"; {refused} items without their key were dropped"
        return line, bool(refused)

    # ------------------------------------------------------------------------------------------------- save
    def start(self) -> None:
        """Save in the background while the stack runs."""
        self._thread = threading.Thread(target=self._run, name="state-saver", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop saving in the background and save once more (call when no more requests come in)."""
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
            self._thread = None
        if self.backend is not None:
            self.save()

    def _run(self) -> None:
        while not self._stopping.wait(min(1.0, self.interval_s)):
            if time.monotonic() < self._next_save_at:
                continue
            try:
                self.save()
            except Exception:
                log.exception("saving the local tables to %s failed; retrying later", self.path)
                self._next_save_at = time.monotonic() + 10 * self.interval_s

    def save(self, *, force: bool = False) -> bool:
        """Write the tables to the file if a request may have written since the last save (or ``force``);
        returns whether it wrote."""
        with self._save_lock:
            generation = moto_fixes.write_generation()
            if generation == self._saved_generation and not force:
                return False
            started = time.monotonic()
            definitions = table_definitions(self.template)
            with moto_fixes.DYNAMODB_LOCK:  # one consistent moment for every table, listed in milliseconds
                generation = moto_fixes.write_generation()
                listed = {
                    name: moto_fixes.stored_items(self.backend.tables[name])
                    for name in definitions
                    if name in self.backend.tables
                }
            self._write(listed, definitions)
            self._saved_generation = generation
            took = time.monotonic() - started
            # Never spend more than about a tenth of the time saving, however large the tables grow.
            self._next_save_at = time.monotonic() + max(self.interval_s, 10 * took)
            log.debug("saved the local tables to %s in %.2f s", self.path, took)
            return True

    def _write(self, listed: Mapping[str, list[Any]], definitions: Mapping[str, Any]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        temporary = self.path.with_name(f".{self.path.name}.tmp")
        header = {"format": FORMAT, "version": VERSION, "saved_at": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")}
        with open(temporary, "w", encoding="utf-8") as out:
            out.write(json.dumps(header, ensure_ascii=False)[:-1] + ', "tables": {')
            for number, (name, items) in enumerate(listed.items()):
                table = {"definition": definitions[name], "count": len(items)}
                out.write(("," if number else "") + f"\n{json.dumps(name)}: " + json.dumps(table)[:-1] + ', "items": [')
                for index, item in enumerate(items):
                    attributes = item.to_json()["Attributes"]
                    line = json.dumps(attributes, ensure_ascii=False, default=_base64)
                    out.write(("," if index else "") + "\n" + line)
                out.write("]}")
            out.write("}}\n")
            out.flush()
            os.fsync(out.fileno())
        os.replace(temporary, self.path)

    @staticmethod
    def _shown(path: Path) -> str:
        try:
            return os.path.relpath(path)
        except ValueError:  # another drive on Windows
            return str(path)


def _expired(attrs: Mapping[str, Any], ttl_attribute: str | None, now: int) -> bool:
    if ttl_attribute is None:
        return False
    value = attrs.get(ttl_attribute)
    if not isinstance(value, dict) or "N" not in value:
        return False  # DynamoDB ignores TTL attributes that are not numbers
    try:
        return float(value["N"]) < now
    except ValueError:
        return False


def _base64(value: Any) -> str:
    # Binary values arrive base64-encoded over the API and moto keeps them so; bytes from anywhere else too.
    if isinstance(value, bytes | bytearray):
        return base64.b64encode(value).decode("ascii")
    raise TypeError(f"{type(value).__name__} is not JSON serializable")
