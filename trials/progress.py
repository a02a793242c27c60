"""A progress bar on stderr: patients and simulated patient-days done, rate and time left."""

from __future__ import annotations

import sys
import time


class ProgressBar:
    """Call with a finished task's record (``{"subjects": n, "patient_days": d}``) or :meth:`advance` with
    patient-days done inside a task. Draws at most 10 times a second; writes nothing when disabled."""

    def __init__(self, n_subjects: int, days: float, *, enabled: bool = True, stream=None, width: int = 30) -> None:
        self.n_subjects = n_subjects
        self.days = days
        self.total_days = n_subjects * days
        self.enabled = enabled
        self.stream = stream if stream is not None else sys.stderr
        self.width = width
        self.subjects_done = 0
        self.days_done = 0.0
        self._partial = 0.0
        self._t0 = time.perf_counter()
        self._last_draw = 0.0
        self._drawn = False

    def advance(self, patient_days: float) -> None:
        """Patient-days simulated inside a running task (an estimate until the task finishes)."""
        self._partial += patient_days
        self._draw()

    def __call__(self, record: dict) -> None:
        self.subjects_done += int(record.get("subjects", 0))
        days = float(record.get("patient_days", 0.0))
        self.days_done += days
        self._partial = max(0.0, self._partial - days)  # that task's in-task reports are now counted as done
        self._draw(force=self.subjects_done >= self.n_subjects)

    def _draw(self, force: bool = False) -> None:
        if not self.enabled:
            return
        now = time.perf_counter()
        if not force and now - self._last_draw < 0.1:
            return
        self._last_draw = now
        days = min(self.days_done + self._partial, self.total_days)
        frac = days / self.total_days if self.total_days else 1.0
        filled = int(round(frac * self.width))
        elapsed = now - self._t0
        rate = days / elapsed if elapsed > 0 else 0.0
        left = (self.total_days - days) / rate if rate > 0 else float("nan")
        eta = f"{left:5.0f} s left" if left == left else "   -- s left"
        line = (f"\rtrial [{'#' * filled}{'.' * (self.width - filled)}] {self.subjects_done}/{self.n_subjects} "
                f"patients, {days:.1f}/{self.total_days:.1f} patient-days, {rate:.1f}/s, {eta}")
        self.stream.write(line)
        self.stream.flush()
        self._drawn = True

    def close(self) -> None:
        if self.enabled and self._drawn:
            self._draw(force=True)
            self.stream.write("\n")
            self.stream.flush()
