"""Families whose samples need their own solvers and lengths (tests/test_ruler_tasks.py), left out
of the generic per-family tests: RULER's variable tracking and word-frequency tasks."""

RULER_FAMILIES = ("variable_tracking", "common_words", "frequent_words")
