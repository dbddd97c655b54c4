"""The gateway's error answer as an exception: every check raises ``TopError`` and the gateway turns it into an
``error_response`` document (code, msg, sub_code, sub_msg)."""

from __future__ import annotations


class TopError(Exception):
    def __init__(self, code: int, msg: str, sub_code: str | None = None, sub_msg: str | None = None) -> None:
        super().__init__(f"{code} {msg} {sub_code} {sub_msg}")
        self.code = code
        self.msg = msg
        self.sub_code = sub_code
        self.sub_msg = sub_msg


def missing(name: str) -> TopError:
    """Code 40: a required API parameter is absent or blank."""
    return TopError(40, "Missing required arguments", f"isv.missing-parameter:{name}", f"missing parameter {name}")


def invalid(sub_msg: str) -> TopError:
    """Code 41: an API parameter is present but wrong; ``sub_msg`` names the first problem."""
    return TopError(41, "Invalid arguments", "isv.invalid-parameter", sub_msg)
