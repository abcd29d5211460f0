"""What a benchmark section hands to the report: checks against targets, tables, raw numbers, plots.

Every table row names its target and says PASS or MISS; rows that only give
context (no target of their own) say "info".
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

PASS, MISS, INFO = "PASS", "MISS", "info"


def status(passed: bool | None) -> str:
    if passed is None:
        return INFO
    return PASS if passed else MISS


@dataclass
class SectionResult:
    name: str  # e.g. "rest" (what --only takes)
    title: str  # e.g. "REST /predict on loopback"
    checks: list[dict[str, Any]] = field(default_factory=list)  # the summary table's rows
    tables: list[dict[str, Any]] = field(default_factory=list)  # {"title", "columns", "rows"}
    data: dict[str, Any] = field(default_factory=dict)  # raw measured numbers (results.json)
    notes: list[str] = field(default_factory=list)  # why a target was missed, caveats
    plots: list[str] = field(default_factory=list)  # PNG file names in the output folder
    # Arrays and other things the plots need that do not belong in results.json.
    extras: dict[str, Any] = field(default_factory=dict, repr=False)

    def check(self, name: str, target: str, measured: str, value: float | None, passed: bool | None,
              why: str | None = None) -> str:
        """Record one target (or, with passed=None, one context figure) for the summary; returns its status.

        `why`: for a miss, the reason the closing note gives (else the section's notes are used).
        """
        result = status(passed)
        self.checks.append({"name": name, "target": target, "measured": measured, "value": value,
                            "status": result, "why": why if result == MISS else None})
        return result

    def table(self, title: str, columns: list[str], rows: list[list[Any]]) -> None:
        self.tables.append({"title": title, "columns": columns, "rows": rows})

    def note(self, text: str) -> None:
        self.notes.append(text)

    def to_dict(self) -> dict[str, Any]:
        return {key: value for key, value in vars(self).items() if key != "extras"}


def pct(value: float | None, digits: int = 2) -> str:
    return "n/a" if value is None else f"{100 * value:.{digits}f}%"


def ms(seconds: float | None, digits: int = 2) -> str:
    return "n/a" if seconds is None else f"{1000 * seconds:.{digits}f} ms"


def ratio(value: float | None) -> str:
    if value is None:
        return "n/a"
    return f"{value:.0f}x" if value >= 100 else f"{value:.1f}x"
