"""A twin of a real patient: import their data, fit the twin, replay other therapies on it."""
