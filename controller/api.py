"""The controller interface every dosing algorithm implements (MPC and the baselines alike).

``decide(state, snapshot) -> (state, proposal)`` is a pure function: the snapshot holds ``now_min`` and everything
the decision may see; the controller's own state goes in and comes out explicitly and serialises to JSON so any
decision can be replayed from the journal. No wall clock, no I/O, no globals.
"""

from __future__ import annotations

from typing import Any, Mapping, Protocol

from safety.commands import Proposal
from safety.settings import TherapySettings
from safety.snapshot import Snapshot

ControllerState = Mapping[str, Any]
"""A controller's state: a JSON-serialisable mapping (numbers, strings, lists, nested mappings)."""


class Controller(Protocol):
    """A dosing algorithm."""

    name: str

    def initial_state(self, settings: TherapySettings) -> ControllerState:
        """State before the first decision."""
        ...

    def decide(self, state: ControllerState, snapshot: Snapshot) -> tuple[ControllerState, Proposal]:
        """One decision at ``snapshot.now_min``."""
        ...
