"""README.md's measured figures, generated from one source: benchmarks/results.json.

    python -m benchmarks.readme           # rewrite README.md's generated regions from results.json
    python -m benchmarks.readme --check   # exit 1, showing the difference, when README.md disagrees

A generated region sits between `<!-- begin:NAME -->` and `<!-- end:NAME -->` in README.md;
NAME is a key of REGIONS. Everything else in the README is left alone. Each region says
which run its figures come from (date, machine, command), so a reader can tell them
apart from the figures the shipped models record about their own training run
(exports/*.json, shown in the Models tab). Only a full run is quoted: a quick run's
miniature figures are refused.
"""
from __future__ import annotations

import argparse
import datetime as _dt
import difflib
import json
import re
import sys
from pathlib import Path
from typing import Any, Callable, Mapping

from benchmarks import report
from benchmarks.outcome import pct
from training.registry import MODELS as REGISTRY
from training.registry import ModelSpec

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
RESULTS = Path(__file__).resolve().parent / report.JSON_NAME

# What each model is (the table's first row; not a measurement).
WHAT = {
    "model1": "multinomial logistic regression (scikit-learn `MLPClassifier` with no hidden layer: one "
              "softmax layer) trained by mini-batch SGD on deskewed digits of MNIST and the canvas mix (training/canvas_data.py)",
    "model2": "Keras CNN: Conv32 → Pool → Conv64 → Pool → Dense128 → Dropout(0.5) → Dense10, on MNIST, the canvas mix and non-digits (outlier exposure), light augmentation",
    "model3": "Keras CNN: Conv32 → Pool → 2×(Conv48+BN) with a residual shortcut → Pool → 2×(Conv96+BN) with a residual "
              "shortcut → global average pooling → Dropout(0.3) → Dense10 (168k parameters), on the same data as "
              "Model 2, strong augmentation",
}
# The original app's published full-training times (the benchmark's training section compares with them).
ORIGINAL = {"model1": "original app: 2–3 min on an M1 Pro", "model2": "original: 5–7 min on an M1 Pro GPU"}
MODELS = tuple(REGISTRY)
# A registered model the run did not measure (added after it) gets a column saying so, not a KeyError.
NOT_MEASURED = "not in this run (`python -m benchmarks` measures it)"


class ReadmeError(Exception):
    """README.md or results.json cannot be used as they are; the message says why."""


def run_line(document: dict[str, Any]) -> str:
    """Which run the figures come from: command, date, machine and how loaded it was."""
    machine = document["machine"]
    load = machine.get("load_average_at_start")
    busiest = max((section.get("other_cpu_share") or 0) for section in document["sections"].values())
    others = "under 1%" if busiest < 0.01 else f"at most {100 * busiest:.0f}%"
    # A partial rerun (--only) merges its sections into the document: name every command behind it, each
    # with when it ran, oldest first.
    started: dict[str, str] = {}
    for section in document["sections"].values():
        command = section.get("command", document["command"])
        started[command] = min(started.get(command, section["started_at"]), section["started_at"])
    commands = sorted(started, key=lambda command: started[command])

    def when(command: str) -> str:
        moment = _dt.datetime.fromisoformat(started[command]).astimezone(_dt.timezone.utc)
        return moment.strftime("%Y-%m-%d %H:%M UTC")

    run = (f"`{commands[0]}` on {when(commands[0])} ({document['seconds'] / 60:.1f} minutes)" if len(commands) == 1
           else f"`{commands[0]}` on {when(commands[0])}, sections rerun by "
           + ", ".join(f"`{c}` ({when(c)})" for c in commands[1:]))
    return (f"{run}, {machine['cores']}-core "
            f"{machine['cpu']}, {machine['memory_gib']} GiB, Python {machine['python']}; load average at start "
            f"{load[0]:.2f}, other processes used {others} of the CPU during any section "
            f"([`benchmarks/results.json`](benchmarks/results.json)).")


def model_table(document: dict[str, Any], models: Mapping[str, ModelSpec] | None = None) -> list[str]:
    """One column per registered model (`models`: the registry unless a test passes its own)."""
    models = REGISTRY if models is None else models
    sections = document["sections"]
    accuracy, training = sections["accuracy"]["data"], sections["training"]["data"]
    cores = document["machine"]["cores"]

    def trained(name: str) -> str:
        record = training[name]
        data = record.get("data_seconds")
        prepared = "" if data is None else (
            f", of which {data:.1f} s preparing the data (canvas mix "
            f"{'from its cache' if record.get('data_source') == 'cache' else 'drawn'})")
        original = f"; {ORIGINAL[name]}" if name in ORIGINAL else ""
        return (f"**{record['train_seconds']:.1f} s** training ({record['wall_seconds']:.1f} s wall, with data "
                f"preparation and export{prepared}{original})")

    def files(name: str) -> str:
        native = models[name].native_format
        return f"`exports/{name}.{native}` / `exports/{name}.onnx` ({accuracy[name]['onnx_bytes'] / 1024:.0f} KiB)"

    def measured(section: dict[str, Any], cell: Callable[[str], str]) -> dict[str, str]:
        return {name: cell(name) if name in section else NOT_MEASURED for name in models}

    rows = [("What", {name: WHAT.get(name, spec.description) for name, spec in models.items()}),
            ("MNIST test accuracy (shipped models)",
             measured(accuracy, lambda name: f"**{pct(accuracy[name]['accuracy'])}**")),
            (f"Full training (default options) on {cores} CPU cores", measured(training, trained)),
            ("Native file / ONNX file", measured(accuracy, files))]
    titles = [spec.title.split(":", 1)[0] for spec in models.values()]
    return (["| | " + " | ".join(titles) + " |", "|" + " --- |" * (len(titles) + 1)]
            + [f"| {label} | " + " | ".join(cells[name] for name in models) + " |" for label, cells in rows]
            + ["", "Figures from " + run_line(document) + " The shipped models' own metadata (`exports/*.json`, "
               "shown in the Models tab) records the run that trained them, which was not this one, so its "
               "training times differ. See [Benchmarks](#benchmarks)."])


def benchmark_table(document: dict[str, Any]) -> list[str]:
    return ["Latest run: " + run_line(document), ""] + report.targets_table(document["sections"])


REGIONS: dict[str, Callable[[dict[str, Any]], list[str]]] = {
    "model-table": model_table,
    "benchmark-table": benchmark_table,
}


def render(readme: str, document: dict[str, Any]) -> str:
    """`readme` with every generated region rewritten from `document` (a full run's results.json)."""
    if document.get("quick"):
        raise ReadmeError("results.json holds a quick run (miniature figures): run `python -m benchmarks` first")
    missing = [name for name in ("accuracy", "training") if document["sections"].get(name, {}).get("error") is not
               None or name not in document["sections"]]
    if missing:
        raise ReadmeError(f"results.json has no usable {' or '.join(missing)} section: run `python -m benchmarks`")
    for name, build in REGIONS.items():
        pattern = re.compile(rf"(<!-- begin:{name} -->\n)(?:.*?\n)?(<!-- end:{name} -->)", re.S)
        if len(pattern.findall(readme)) != 1:
            raise ReadmeError(f"README.md needs exactly one <!-- begin:{name} --> ... <!-- end:{name} --> region")
        body = "\n".join(build(document)) + "\n"
        readme = pattern.sub(lambda match: match.group(1) + body + match.group(2), readme)
    return readme


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.readme", description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only compare; exit 1 when README.md disagrees")
    parser.add_argument("--readme", type=Path, default=README)
    parser.add_argument("--results", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    current = args.readme.read_text(encoding="utf-8")
    try:
        wanted = render(current, json.loads(args.results.read_text(encoding="utf-8")))
    except (ReadmeError, OSError, ValueError, KeyError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    if wanted == current:
        print(f"{args.readme.name} agrees with {args.results.name}")
        return 0
    if args.check:
        sys.stdout.writelines(difflib.unified_diff(current.splitlines(True), wanted.splitlines(True),
                                                   str(args.readme), f"{args.readme} from {args.results.name}"))
        return 1
    temp = args.readme.with_name(f".{args.readme.name}.tmp")
    temp.write_text(wanted, encoding="utf-8")
    temp.replace(args.readme)  # atomic: a reader never sees half a README
    print(f"rewrote the generated regions of {args.readme.name} from {args.results.name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
