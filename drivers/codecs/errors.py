"""The one error every decoder raises on malformed input."""

from __future__ import annotations


class DecodeError(ValueError):
    """Malformed bytes: short, oversized, bad CRC, unknown op code or impossible value. ``reason`` says which."""

    def __init__(self, reason: str, data: bytes = b"") -> None:
        super().__init__(f"{reason} (data={bytes(data[:64]).hex()})")
        self.reason = reason
        self.data = bytes(data)
