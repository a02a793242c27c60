"""CRC-16 variants used by the device protocols.

- CRC-16/MCRF4XX: the Bluetooth CGMS/IDS E2E-CRC as open implementations compute it (reflected poly 0x8408,
  init 0xFFFF, no final XOR). Check value for b"123456789": 0x6F91.
- CRC-16/XMODEM: New Era safe-mode packets (poly 0x1021, init 0x0000, MSB first). Check: b"SAF0" -> 0x5543.
"""

from __future__ import annotations


def _table_mcrf4xx() -> tuple[int, ...]:
    table = []
    for byte in range(256):
        crc = byte
        for _ in range(8):
            crc = (crc >> 1) ^ 0x8408 if crc & 1 else crc >> 1
        table.append(crc)
    return tuple(table)


def _table_xmodem() -> tuple[int, ...]:
    table = []
    for byte in range(256):
        crc = byte << 8
        for _ in range(8):
            crc = ((crc << 1) ^ 0x1021) & 0xFFFF if crc & 0x8000 else (crc << 1) & 0xFFFF
        table.append(crc)
    return tuple(table)


_MCRF4XX = _table_mcrf4xx()
_XMODEM = _table_xmodem()


def crc16_mcrf4xx(data: bytes, init: int = 0xFFFF) -> int:
    """CRC-16/MCRF4XX of ``data`` (the E2E-CRC)."""
    crc = init
    for b in data:
        crc = (crc >> 8) ^ _MCRF4XX[(crc ^ b) & 0xFF]
    return crc


def crc16_xmodem(data: bytes, init: int = 0x0000) -> int:
    """CRC-16/XMODEM of ``data``."""
    crc = init
    for b in data:
        crc = ((crc << 8) & 0xFFFF) ^ _XMODEM[((crc >> 8) ^ b) & 0xFF]
    return crc
