"""twinloop controller: the dosing decision (twin + UKF + MPC) and the baseline controllers.

``decide(state, snapshot) -> (state, proposal)`` is the MPC decision with the default configuration;
:class:`MPCController` implements :class:`controller.api.Controller`. CasADi is imported on the first decision.
(The name ``controller.decide`` is the function; import the module as ``from controller.decide import ...``.)
"""

from __future__ import annotations

from controller.decide import ControllerConfig, MPCController, decide

__all__ = ["decide", "MPCController", "ControllerConfig"]
