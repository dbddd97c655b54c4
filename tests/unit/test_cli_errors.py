"""``python -m bridge_local``: every expected failure is one line on stderr and exit status 1, never a traceback."""

from __future__ import annotations

from pathlib import Path

import pytest

from bridge_local.__main__ import main

CLOSED = "http://127.0.0.1:9"  # the discard port: nothing listens there


@pytest.mark.parametrize(
    ("argv", "words"),
    [
        (
            ["send-qimen", "--url", f"{CLOSED}/qimen", "events/qimen_fulfillment_create.json"],
            "is the local stack running",
        ),
        (["send-qimen", "no-such-file.json"], "No such file"),
        (["capacity", "--store", "s", "--item", "i", "--endpoint", CLOSED], "reading capacity (GetItem) failed"),
        (["intake", "writeoffs", "no-such-file.jsonl"], "no-such-file.jsonl"),
        (["control", "show", "--endpoint", CLOSED], "failed"),
    ],
)
def test_expected_failures_are_one_line_and_exit_1(
    argv: list[str], words: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(Path(__file__).resolve().parents[2])
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: ") and words in err and err.count("\n") == 1, err
    assert "Traceback" not in err


def test_bad_json_in_a_payload_file_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text("{bad", encoding="utf-8")
    assert main(["send-qimen", "--url", f"{CLOSED}/qimen", str(bad)]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1
