"""In-silico trials: cohort x scenario x controllers, clinical metrics, reports, distributed runs.

- :mod:`trials.runner` -- :class:`~trials.runner.TrialSpec`, :func:`~trials.runner.run_trial` (the entry point)
- :mod:`trials.simulate` -- one chunk of subjects under one controller, minute by minute
- :mod:`trials.supervision` -- the supervisor between controller and pump, and the approved-command adapter
- :mod:`trials.therapy` -- therapy settings from a subject's clinic data
- :mod:`trials.metrics`, :mod:`trials.cvga` -- clinical metrics
- :mod:`trials.chunkio`, :mod:`trials.summary` -- per-chunk files, summary.json
- :mod:`trials.report`, :mod:`trials.plots` -- report.html and its figures
- :mod:`trials.distributed`, :mod:`trials.progress` -- local workers / Dask, the progress bar

See ``docs/trials.md``.
"""
