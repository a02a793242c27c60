"""Issue 8 acceptance on virtual patients with known truth (slow: ~1-2 min per subject).

For each representative reference subject (two per group, fixed list, see
:data:`trials.personal.validation.SUBJECTS`): 10 days of basal-bolus life with CGM noise and 10 % carb-counting
error; a twin fitted to days 1-7 predicts days 8-10 under the same therapy (CGM RMSE <= 20 mg/dL, TIR within 5
points of the truth) and under the MPC instead of basal-bolus (TIR within 5 points of the same subject run closed
loop with the MPC on the UVA/Padova simulator).
"""

from __future__ import annotations

import pytest

from trials.personal.validation import RMSE_LIMIT_MG_DL, SUBJECTS, TIR_LIMIT_POINTS, validate_subject

pytestmark = pytest.mark.slow


@pytest.mark.timeout(900)
@pytest.mark.parametrize("subject", SUBJECTS)
def test_twin_predicts_same_and_changed_therapy(subject: str) -> None:
    v = validate_subject(subject, seed=1, carb_error_sd_pct=10.0, controller="mpc")
    print(v.line())
    assert v.pred_rmse_mg_dl <= RMSE_LIMIT_MG_DL, v.line()
    assert abs(v.tir_error) <= TIR_LIMIT_POINTS, v.line()
    assert abs(v.ctrl_tir_error) <= TIR_LIMIT_POINTS, v.line()
