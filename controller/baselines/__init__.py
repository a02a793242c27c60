"""Baseline controllers for side-by-side trials: basal-bolus (``bb``), PID with insulin feedback (``pid``) and an
oref0-style temp-basal algorithm (``oref``). Each implements :class:`controller.api.Controller` per subject and a
vectorized ``decide_batch`` over arrays of subjects (see :mod:`controller.baselines.common`)."""

from controller.baselines.bb import BasalBolus
from controller.baselines.common import BatchInputs, BatchProposal
from controller.baselines.oref import Oref0
from controller.baselines.pid import PIDIFB

BASELINES = {"bb": BasalBolus, "pid": PIDIFB, "oref": Oref0}

__all__ = ["BASELINES", "BasalBolus", "PIDIFB", "Oref0", "BatchInputs", "BatchProposal"]
