"""Delivery bookkeeping shared by insulin on board, the supervisor and the journal (stdlib only, so a restarting
runtime can fold its journal without importing numpy).

A command can have several records over its life (COMMANDED when sent, then CONFIRMED, FAILED or UNCERTAIN); the
*effective* record of a command is the most definite one: CONFIRMED > FAILED > UNCERTAIN > COMMANDED (the later one
on ties). Records with an empty ``command_id`` are the pump's own history and count one by one.
"""

from __future__ import annotations

from typing import Iterable

from safety.commands import (
    ApprovedCommand, Bolus, CancelBolus, DeliveryKind, DeliveryRecord, DeliveryStatus, Suspend, TempBasal,
)

__all__ = ["EffectiveDeliveries", "effective_deliveries", "reduced_deliveries", "pending_deliveries",
           "planned_record"]

_CONFIRMED, _FAILED, _UNCERTAIN = DeliveryStatus.CONFIRMED, DeliveryStatus.FAILED, DeliveryStatus.UNCERTAIN



class EffectiveDeliveries(tuple):
    """Records already reduced by :func:`effective_deliveries` (one per command, FAILED dropped). Passing one to the
    functions of this module and of :mod:`safety.iob` skips the reduction, so the supervisor does it once.

    Like any tuple of frozen records it never changes, so what is derived from it (the arrays of
    :mod:`safety.iob`) is kept in :attr:`memo` and computed once per record set."""

    @property
    def memo(self) -> dict:
        """Values derived from these records, by key (instances have a ``__dict__`` for it)."""
        return self.__dict__.setdefault("_memo", {})


def _rank(status: DeliveryStatus) -> int:
    # identity tests: hashing an Enum member costs more than the rest of the loop
    return 3 if status is _CONFIRMED else 2 if status is _FAILED else 1 if status is _UNCERTAIN else 0


def effective_deliveries(deliveries: Iterable[DeliveryRecord]) -> list[DeliveryRecord]:
    """One record per command (CONFIRMED > FAILED > UNCERTAIN > COMMANDED; the later one on ties), FAILED ones
    dropped, records with an empty command id kept one by one; in input order."""
    return list(reduced_deliveries(deliveries))


def reduced_deliveries(deliveries: Iterable[DeliveryRecord]) -> EffectiveDeliveries:
    """:func:`effective_deliveries` as an :class:`EffectiveDeliveries` (returned as is when already reduced; no
    cache across calls: the safety kernel keeps no global state)."""
    if isinstance(deliveries, EffectiveDeliveries):
        return deliveries
    return EffectiveDeliveries(_effective(deliveries))


def _effective(deliveries: Iterable[DeliveryRecord]) -> list[DeliveryRecord]:
    records = deliveries if isinstance(deliveries, (list, tuple)) else list(deliveries)
    ids = [rec.command_id for rec in records if rec.command_id]
    if len(set(ids)) == len(ids):  # one record per command (or the pump's own history): nothing to reduce
        return [rec for rec in records if rec.status is not _FAILED]
    best: dict[str, tuple[int, int, DeliveryRecord]] = {}
    keep: list[tuple[int, DeliveryRecord]] = []
    for i, rec in enumerate(records):
        if not rec.command_id:
            keep.append((i, rec))
            continue
        rank = _rank(rec.status)
        prev = best.get(rec.command_id)
        if prev is None or rank >= prev[0]:
            best[rec.command_id] = (rank, i if prev is None else prev[1], rec)
    keep.extend((i, rec) for _, i, rec in best.values())
    keep.sort(key=lambda item: item[0])
    return [rec for _, rec in keep if rec.status is not _FAILED]


def pending_deliveries(deliveries: Iterable[DeliveryRecord]) -> list[DeliveryRecord]:
    """Commands whose outcome is unknown: no CONFIRMED or FAILED record, latest status COMMANDED or UNCERTAIN."""
    return [r for r in reduced_deliveries(deliveries)
            if r.status is DeliveryStatus.COMMANDED or r.status is _UNCERTAIN]  # identity: no Enum __eq__


def planned_record(approved: ApprovedCommand, status: DeliveryStatus, amount_u: float | None = None) -> DeliveryRecord:
    """The delivery an approved command makes if the pump executes it as commanded, with ``status`` (COMMANDED before
    sending, UNCERTAIN without an answer, CONFIRMED/FAILED from the pump). ``amount_u`` replaces the planned amount
    when the pump reports what it really delivered. A bolus (or its cancellation) is instantaneous at the approval
    time; a temporary basal or suspension covers its duration; a resume delivers nothing itself."""
    c, t, cid = approved.command, approved.issued_at_min, approved.command_id
    if isinstance(c, Bolus):
        return DeliveryRecord(cid, DeliveryKind.BOLUS, t, t, c.bolus_u if amount_u is None else amount_u, status)
    if isinstance(c, TempBasal):
        planned = c.rate_u_per_h * c.duration_min / 60.0
        return DeliveryRecord(cid, DeliveryKind.BASAL, t, t + c.duration_min,
                              planned if amount_u is None else amount_u, status, c.rate_u_per_h)
    if isinstance(c, Suspend):
        return DeliveryRecord(cid, DeliveryKind.BASAL, t, t + c.duration_min, 0.0, status, 0.0)
    kind = DeliveryKind.BOLUS if isinstance(c, CancelBolus) else DeliveryKind.BASAL
    return DeliveryRecord(cid, kind, t, t, 0.0, status)
