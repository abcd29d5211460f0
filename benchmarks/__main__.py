"""Run the benchmarks and write results.md, results.json and PNG plots.

    python -m benchmarks                      # everything (under 10 minutes on 2 cores), into benchmarks/
    python -m benchmarks --quick              # a miniature run (1-3 minutes), into a new temp folder
    python -m benchmarks --quick --out /tmp/b # the same, into /tmp/b
    python -m benchmarks --only rest,cold_start

Sections: accuracy, robustness, drawn, inference, rest, browser, training, cold_start, explain.
A full run writes benchmarks/results.* and the plots, which the README quotes (python -m
benchmarks.readme); a quick run's throw-away figures never land there unless --out says so.
A partial run (--only) is merged into the results already in --out.
MNIST comes from $MNIST_DIR (or the loader's cache); the models from exports/ ($EXPORTS_DIR).
Exits 1 when a section failed to run (a missed target is reported, not an error).
"""
from __future__ import annotations

import argparse
import datetime as _dt
import importlib
import shlex
import signal
import sys
import tempfile
import time
import traceback
from pathlib import Path

from benchmarks import plots, report
from benchmarks.config import FULL, QUICK, SECTIONS
from benchmarks.context import Context
from benchmarks.machine import CpuMeter, describe, load_average
from benchmarks.outcome import SectionResult

DEFAULT_OUT = Path(__file__).resolve().parent


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description="Digit Studio benchmarks.")
    parser.add_argument("--quick", action="store_true", help="a miniature run (1-3 minutes, not representative)")
    parser.add_argument("--out", type=Path, help="output folder (default: benchmarks/ for a full run, "
                                                  "a new temporary folder for --quick)")
    parser.add_argument("--only", default="", help=f"comma-separated sections: {','.join(SECTIONS)}")
    args = parser.parse_args(argv)
    args.sections = [name.strip() for name in args.only.split(",") if name.strip()] or list(SECTIONS)
    unknown = [name for name in args.sections if name not in SECTIONS]
    if unknown:
        parser.error(f"unknown section(s) {', '.join(unknown)}; choose from {', '.join(SECTIONS)}")
    return args


def run_section(name: str, ctx: Context, command: str) -> dict:
    module = importlib.import_module(SECTIONS[name])
    ctx.log(f"{name}: {module.TITLE}")
    began, started_at = time.perf_counter(), _now()
    before = load_average()
    error = None
    with CpuMeter() as meter:
        try:
            result: SectionResult = module.run(ctx)
        except Exception:  # one failing section must not lose the others' results
            error = traceback.format_exc()
            ctx.log(f"{name} FAILED:\n{error}")
            result = SectionResult(name, module.TITLE)
    result.plots = _draw(result, ctx) if error is None else []
    section = result.to_dict()
    section.update({"command": command, "quick": ctx.config.quick, "error": error,
                    "started_at": started_at, "seconds": round(time.perf_counter() - began, 1),
                    "load_average_before": before, "load_average_after": load_average(),
                    "other_cpu_share": meter.other_share})
    ctx.log(f"{name}: done in {section['seconds']:.0f} s")
    return section


def _draw(result: SectionResult, ctx: Context) -> list[str]:
    try:
        written = plots.draw(result, ctx.out)
    except Exception:  # a broken plot must not lose the measurements
        result.note(f"Plotting failed: {traceback.format_exc().strip().splitlines()[-1]}")
        return []
    return [plot for plot in result.plots if plot in written]


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    # SIGTERM ends the run like Ctrl-C does: through the `finally` blocks that stop the servers.
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    command = "python -m benchmarks" + "".join(" " + shlex.quote(a) for a in (argv if argv is not None
                                                                                else sys.argv[1:]))
    config = QUICK if args.quick else FULL
    out = output_folder(args)
    out.mkdir(parents=True, exist_ok=True)
    ctx = Context(config, out)
    machine = describe()
    sections = report.load_previous(out, config.quick) if args.only else {}
    began = time.perf_counter()
    try:
        for name in args.sections:
            sections[name] = run_section(name, ctx, command)
            # Written after every section, so an interrupted run keeps what it measured.
            document = {"generated_at": _now(), "quick": config.quick, "command": command, "machine": machine,
                        "sections": {key: sections[key] for key in SECTIONS if key in sections},
                        "seconds": round(time.perf_counter() - began, 1)}
            report.write(out, document)
    finally:
        ctx.cleanup()
    failed = [name for name in args.sections if sections[name].get("error")]
    statuses = [check["status"] for name in args.sections for check in sections[name]["checks"]]
    ctx.log(f"wrote {out / report.MARKDOWN_NAME} and {out / report.JSON_NAME} in "
            f"{time.perf_counter() - began:.0f} s: {statuses.count('PASS')} PASS, {statuses.count('MISS')} MISS"
            + (f"; FAILED: {', '.join(failed)}" if failed else ""))
    if out == DEFAULT_OUT and not config.quick and not args.only:
        ctx.log("README.md quotes these figures: `python -m benchmarks.readme` copies them in")
    return 1 if failed else 0


def output_folder(args: argparse.Namespace) -> Path:
    """--out; else benchmarks/ for a full run, and for a quick one a fresh temporary folder, so that
    its miniature figures cannot overwrite the committed results (the README quotes those)."""
    if args.out is not None:
        return args.out.resolve()
    if args.quick:
        return Path(tempfile.mkdtemp(prefix="digit-studio-benchmarks-quick-"))
    return DEFAULT_OUT


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


if __name__ == "__main__":
    sys.exit(main())
