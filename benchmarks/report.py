"""results.json (every measured number) and results.md (the tables and plots a reader wants)."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from benchmarks.config import SECTIONS
from benchmarks.outcome import MISS, PASS

JSON_NAME, MARKDOWN_NAME = "results.json", "results.md"
# Other processes using this share of all cores during a section make its timings suspect.
BUSY_SHARE = 0.10


def load_previous(out: Path, quick: bool) -> dict[str, Any]:
    """Sections of an earlier run in `out` of the same kind (quick or full), to merge a partial run into."""
    try:
        previous = json.loads((out / JSON_NAME).read_text())
    except (OSError, ValueError):
        return {}
    if previous.get("quick") != quick:
        return {}
    return previous.get("sections", {})


def write(out: Path, document: dict[str, Any]) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / JSON_NAME).write_text(json.dumps(document, indent=2, default=_jsonable) + "\n")
    (out / MARKDOWN_NAME).write_text(markdown(document))


def _jsonable(value: Any) -> Any:
    if hasattr(value, "tolist"):  # numpy scalars and arrays
        return value.tolist()
    return str(value)


def markdown(document: dict[str, Any]) -> str:
    machine = document["machine"]
    sections = document["sections"]
    lines = ["# Digit Studio benchmarks", ""]
    if document.get("quick"):
        lines += ["> **Quick run**: tiny samples and short runs that only prove the harness works. "
                  "These figures are not representative; run `python -m benchmarks` for real ones.", ""]
    commands = sorted({section.get("command", document["command"]) for section in sections.values()})
    lines += [f"Generated {document['generated_at']} by " + ", ".join(f"`{c}`" for c in commands) + ".", ""]
    libraries = ", ".join(f"{name} {version}" for name, version in machine["libraries"].items())
    lines += ["| Machine | |", "| --- | --- |",
              f"| CPU | {machine['cpu']} |",
              f"| Cores | {machine['cores']} |",
              f"| Memory | {machine['memory_gib']} GiB |",
              f"| OS | {machine['os']} |",
              f"| Python | {machine['python']} |",
              f"| Libraries | {libraries} |",
              f"| Load average at start (1, 5, 15 min) | {_load(machine.get('load_average_at_start'))} |", ""]

    lines += ["## Targets", ""] + targets_table(sections) + [""]

    for name, section in sections.items():
        lines += [f"## {_number(name)}. {section['title']}", ""]
        lines.append(f"`{section.get('command', document['command'])}` · {section.get('seconds', 0):.0f} s · "
                     f"other processes used {_share(section.get('other_cpu_share'))} of the CPU meanwhile · "
                     f"load average before/after: {_load(section.get('load_average_before'))} / "
                     f"{_load(section.get('load_average_after'))}")
        lines.append("")
        if section.get("error"):
            lines += ["**This section failed:**", "", "```", section["error"].strip()[-3000:], "```", ""]
        for table in section["tables"]:
            lines += [f"**{table['title']}**", "", "| " + " | ".join(table["columns"]) + " |",
                      "| " + " | ".join("---" for _ in table["columns"]) + " |"]
            for row in table["rows"]:
                cells = [str(cell) for cell in row]
                cells[-1] = _status(cells[-1])
                lines.append("| " + " | ".join(cells) + " |")
            lines.append("")
        for plot in section.get("plots", []):
            lines += [f"![{plot}]({plot})", ""]
        for note in section.get("notes", []):
            lines.append(f"- {note}")
        if section.get("notes"):
            lines.append("")

    lines += ["## Closing notes", ""] + closing_notes(document) + [""]
    return "\n".join(lines)


def targets_table(sections: dict[str, Any]) -> list[str]:
    """The Markdown lines of the targets table: one row per check (results.md and README.md share it)."""
    lines = ["| Section | Measure | Target | Measured | Status |", "| --- | --- | --- | --- | --- |"]
    for name, section in sections.items():
        label = f"{_number(name)}. {name}"
        if section.get("error"):
            lines.append(f"| {label} | the section failed | — | see below | **ERROR** |")
        for check in section["checks"]:
            lines.append(f"| {label} | {check['name']} | {check['target']} | {check['measured']} | "
                         f"{_status(check['status'])} |")
    return lines


def closing_notes(document: dict[str, Any]) -> list[str]:
    """Which targets were missed and why (from each section's notes), and how busy the machine was."""
    notes = []
    misses = [(section, check) for section in document["sections"].values() for check in section["checks"]
              if check["status"] == MISS]
    failed = [section for section in document["sections"].values() if section.get("error")]
    if not misses and not failed:
        notes.append("- Every target was met.")
    for section, check in misses:
        why = check.get("why") or " ".join(section.get("notes", [])) or "see the section above."
        if _busy(section):
            why += (f" Other processes used {_share(section['other_cpu_share'])} of the CPU during this section, "
                    f"so its timings are pessimistic.")
        notes.append(f"- **MISS — {check['name']}** ({check['measured']}; target {check['target']}): {why}")
    for section in failed:
        notes.append(f"- **ERROR — {section['title']}**: {section['error'].strip().splitlines()[-1]}")
    busy = [f"{section['title']} ({_share(section['other_cpu_share'])})"
            for section in document["sections"].values() if _busy(section)]
    if busy:
        notes.append(f"- Other processes shared the CPU (share of all cores they used) during: {'; '.join(busy)}. "
                     f"Timings there are pessimistic; rerun on a quiet machine for reference figures.")
    else:
        notes.append("- No other process used more than "
                     f"{_share(BUSY_SHARE)} of the CPU during any section.")
    if document.get("quick"):
        notes.append("- Quick run: sample counts and training runs are miniature; targets that need the full "
                     "configuration are reported as info.")
    return notes


def _number(name: str) -> int:
    return list(SECTIONS).index(name) + 1


def _busy(section: dict[str, Any]) -> bool:
    return (section.get("other_cpu_share") or 0) >= BUSY_SHARE


def _share(value: float | None) -> str:
    return "n/a" if value is None else f"{100 * value:.0f}%"


def _status(value: str) -> str:
    return {PASS: "**PASS**", MISS: "**MISS**"}.get(value, value)


def _load(values) -> str:
    return ", ".join(f"{value:.2f}" for value in values) if values else "n/a"
