"""twinloop safety kernel: the shared vocabulary, insulin on board, the supervisor and the journal.

This package imports no other package of the project (a test enforces it); only the standard library and numpy.

Modules:
    units, readings, commands, settings, snapshot   the vocabulary (frozen dataclasses, units in the names)
    errors          named errors (SettingsError, JournalCorruptError, SerializationError, ...)
    guardrails      settings validation against the Loop guardrails and age-group hard limits
    deliveries      which delivery record of a command counts; pending (uncertain) commands
    iob             insulin on board / activity (exponential model), 24-h total
    limits          the supervisor's rule constants, shared by the scalar and the batch supervisor
    cgm_gate        CGM gating and the supervisor's own low-glucose prediction
    supervisor      supervise(proposal, context) -> Verdict: the gate every command passes
    supervisor_batch  the same rules over a cohort of numpy arrays
    serialization   JSON encoding of the vocabulary (journal, replay)
    journal         the hash-chained SQLite journal
"""
