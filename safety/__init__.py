"""twinloop safety kernel: the shared vocabulary, insulin on board, the supervisor and the journal.

This package imports no other package of the project (a test enforces it).
"""
