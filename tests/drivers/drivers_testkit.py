"""Helpers shared by the driver tests."""

from __future__ import annotations

from pathlib import Path


def read_corpus(folder: Path) -> list[tuple[str, str, bytes, str]]:
    """Known-bad packets: every ``*.txt`` line ``NAME HEX... # why`` -> (file:line, decoder name, bytes, why)."""
    cases = []
    for path in sorted(folder.glob("*.txt")):
        for lineno, line in enumerate(path.read_text().splitlines(), 1):
            text, _, why = line.partition("#")
            if not text.strip():
                continue
            name, _, hexdata = text.strip().partition(" ")
            cases.append((f"{path.name}:{lineno}", name, bytes.fromhex(hexdata.replace(" ", "")), why.strip()))
    return cases
