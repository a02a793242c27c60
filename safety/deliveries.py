"""Delivery bookkeeping shared by insulin on board, the supervisor and the journal (stdlib only, so a restarting
runtime can fold its journal without importing numpy).

A command can have several records over its life (COMMANDED when sent, then CONFIRMED, FAILED or UNCERTAIN); the
*effective* record of a command is the most definite one: CONFIRMED > FAILED > UNCERTAIN > COMMANDED (the later one
on ties). Records with an empty ``command_id`` are the pump's own history and count one by one.
"""

from __future__ import annotations

from typing import Iterable

from safety.commands import DeliveryRecord, DeliveryStatus

__all__ = ["effective_deliveries", "pending_deliveries"]

_RANK = {DeliveryStatus.CONFIRMED: 3, DeliveryStatus.FAILED: 2, DeliveryStatus.UNCERTAIN: 1,
         DeliveryStatus.COMMANDED: 0}


def effective_deliveries(deliveries: Iterable[DeliveryRecord]) -> list[DeliveryRecord]:
    """One record per command (CONFIRMED > FAILED > UNCERTAIN > COMMANDED; the later one on ties), FAILED ones
    dropped, records with an empty command id kept one by one; in input order."""
    best: dict[str, tuple[int, int, DeliveryRecord]] = {}
    keep: list[tuple[int, DeliveryRecord]] = []
    for i, rec in enumerate(deliveries):
        if not rec.command_id:
            keep.append((i, rec))
            continue
        rank = _RANK[rec.status]
        prev = best.get(rec.command_id)
        if prev is None or rank >= prev[0]:
            best[rec.command_id] = (rank, i if prev is None else prev[1], rec)
    keep.extend((i, rec) for _, i, rec in best.values())
    keep.sort(key=lambda item: item[0])
    return [rec for _, rec in keep if rec.status is not DeliveryStatus.FAILED]


def pending_deliveries(deliveries: Iterable[DeliveryRecord]) -> list[DeliveryRecord]:
    """Commands whose outcome is unknown: no CONFIRMED or FAILED record, latest status COMMANDED or UNCERTAIN."""
    return [r for r in effective_deliveries(deliveries)
            if r.status in (DeliveryStatus.COMMANDED, DeliveryStatus.UNCERTAIN)]
