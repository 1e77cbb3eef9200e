"""Dialogue research on top of captures: reply difficulty, condition effects, curricula, run comparison.

Import from the submodules (:mod:`inspector.research.difficulty`, :mod:`inspector.research.curriculum`,
:mod:`inspector.research.compare_runs`); this package re-exports nothing, so importing one of them
loads no other.
"""
