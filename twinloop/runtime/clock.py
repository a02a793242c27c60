"""Clocks the runtime accepts: the real clock, an accelerated clock shared across processes, and a manual clock.

The runtime never reads the wall clock directly; it asks its :class:`Clock` for ``now_min`` (absolute minutes on the
system timeline: minutes since the Unix epoch on a board, minutes since midnight of day one on a bench) and converts
simulated durations to real seconds with :meth:`Clock.real_s`.

An :class:`AcceleratedClock` is anchored on ``CLOCK_MONOTONIC`` (system-wide on Linux), so the HIL bench and a
runtime process it starts (and restarts after a SIGKILL) agree on simulated time without talking to each other:
``now_min = start_min + (monotonic() - epoch_s) * speed / 60``.
"""

from __future__ import annotations

import asyncio
import time
from typing import Protocol, runtime_checkable


@runtime_checkable
class Clock(Protocol):
    """Simulated (or real) time for the runtime."""

    speed: float
    """Simulated seconds per real second (1 = real time, 60 = one hour per minute)."""

    def now_min(self) -> float:
        """Current time, absolute minutes."""
        ...

    def real_s(self, duration_min: float) -> float:
        """Real seconds that ``duration_min`` simulated minutes take."""
        ...

    def monotonic_at(self, t_min: float) -> float:
        """The ``time.monotonic()`` value (seconds) at which simulated time reaches ``t_min``."""
        ...

    async def sleep_min(self, duration_min: float) -> None:
        """Sleep ``duration_min`` simulated minutes."""
        ...


class RealClock:
    """Wall-clock time: minutes since the Unix epoch; durations in real time."""

    speed = 1.0

    def now_min(self) -> float:
        return time.time() / 60.0

    def real_s(self, duration_min: float) -> float:
        return duration_min * 60.0

    def monotonic_at(self, t_min: float) -> float:
        return time.monotonic() + (t_min - self.now_min()) * 60.0

    async def sleep_min(self, duration_min: float) -> None:
        await asyncio.sleep(max(0.0, duration_min * 60.0))


class AcceleratedClock:
    """Simulated time running ``speed`` times faster than real time, anchored at ``epoch_s`` on CLOCK_MONOTONIC.

    Args:
        speed: simulated seconds per real second (> 0).
        start_min: simulated time (absolute minutes) at the anchor.
        epoch_s: ``time.monotonic()`` value of the anchor; defaults to now. Pass the same value to every process
            that must share the timeline.
    """

    def __init__(self, speed: float, start_min: float = 0.0, epoch_s: float | None = None) -> None:
        if not speed > 0.0:
            raise ValueError(f"speed must be > 0, got {speed!r}")
        self.speed = float(speed)
        self.start_min = float(start_min)
        self.epoch_s = time.monotonic() if epoch_s is None else float(epoch_s)

    def now_min(self) -> float:
        return self.start_min + (time.monotonic() - self.epoch_s) * self.speed / 60.0

    def real_s(self, duration_min: float) -> float:
        return duration_min * 60.0 / self.speed

    def monotonic_at(self, t_min: float) -> float:
        return self.epoch_s + (t_min - self.start_min) * 60.0 / self.speed

    async def sleep_min(self, duration_min: float) -> None:
        await asyncio.sleep(max(0.0, self.real_s(duration_min)))

    def spec(self) -> str:
        """Command-line form understood by :func:`clock_from_args` (``speed:start_min:epoch_s``)."""
        return f"{self.speed!r}:{self.start_min!r}:{self.epoch_s!r}"


class ManualClock:
    """A clock that moves only when told to (tests, replays). ``sleep_min`` advances it and yields once."""

    def __init__(self, start_min: float = 0.0, speed: float = 1.0) -> None:
        self._now_min = float(start_min)
        self.speed = float(speed)

    def now_min(self) -> float:
        return self._now_min

    def advance(self, duration_min: float) -> float:
        self._now_min += float(duration_min)
        return self._now_min

    def set(self, t_min: float) -> None:
        self._now_min = float(t_min)

    def real_s(self, duration_min: float) -> float:
        return duration_min * 60.0 / self.speed

    def monotonic_at(self, t_min: float) -> float:
        return time.monotonic() + self.real_s(t_min - self._now_min)

    async def sleep_min(self, duration_min: float) -> None:
        self.advance(max(0.0, duration_min))
        await asyncio.sleep(0)


def clock_from_args(speed: float | None = None, sim_clock: str | None = None) -> Clock:
    """Build the runtime's clock from the command line: ``--sim-clock speed:start_min:epoch_s`` (what the HIL
    bench passes), else ``--speed N`` (accelerated from simulated minute 0 now), else the real clock."""
    if sim_clock:
        try:
            s, start, epoch = (float(x) for x in sim_clock.split(":"))
        except ValueError as exc:
            raise ValueError(f"--sim-clock must be speed:start_min:epoch_s, got {sim_clock!r}") from exc
        return AcceleratedClock(s, start, epoch)
    if speed is not None and speed != 1.0:
        return AcceleratedClock(speed)
    return RealClock()
