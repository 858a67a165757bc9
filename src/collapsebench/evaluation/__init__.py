"""Evaluations: functions of the phase context returning a flat dict of numbers (the evaluations registry)."""
