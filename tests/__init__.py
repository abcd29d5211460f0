"""Digit Studio tests (a package, so `tests.fakes` never resolves to another installed `tests`)."""
