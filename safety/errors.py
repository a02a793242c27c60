"""Named errors of the safety kernel. Every error says what was wrong, with the offending value.

All errors derive from :class:`SafetyError`; those about bad input also derive from :class:`ValueError` so generic
callers can catch them the usual way.
"""

from __future__ import annotations


class SafetyError(Exception):
    """Root of every error raised by :mod:`safety`."""


class SettingsError(SafetyError, ValueError):
    """A therapy setting is outside its guardrail.

    Attributes:
        setting: dotted name of the setting, e.g. ``"max_bolus_u"`` or ``"basal_u_per_h.entries[1].value"``.
        value: the offending value.
        allowed: the closed range ``(low, high)`` the value must lie in.
    """

    def __init__(self, setting: str, value: object, allowed: tuple[float, float], note: str = "") -> None:
        self.setting = setting
        self.value = value
        self.allowed = (float(allowed[0]), float(allowed[1]))
        self.note = note
        extra = f" ({note})" if note else ""
        super().__init__(f"setting {setting} = {value!r} is outside the allowed range "
                         f"[{self.allowed[0]:g}, {self.allowed[1]:g}]{extra}")


class SerializationError(SafetyError, ValueError):
    """A JSON payload does not describe the object it claims to."""


class JournalError(SafetyError):
    """The journal cannot do what was asked (closed, refusing, I/O)."""


class JournalCorruptError(JournalError):
    """The journal failed verification.

    Attributes:
        first_bad_seq: sequence number of the first event that fails verification (``None`` when the damage is not
            attributable to one event, e.g. a damaged page or a whole-file checksum mismatch).
        reason: what failed.
    """

    def __init__(self, reason: str, first_bad_seq: int | None = None) -> None:
        self.reason = reason
        self.first_bad_seq = first_bad_seq
        where = f"first bad event seq={first_bad_seq}" if first_bad_seq is not None else "damage not attributable to one event"
        super().__init__(f"journal corrupt: {reason} ({where})")

