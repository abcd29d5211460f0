"""Command line trainer, line-compatible with the original app's trainers.

    python -m training model1 [--epochs N] [--batch-size N] [--learning-rate F] [--limit N]
                              [--seed N] [--quick] [--exports-dir DIR] [--mnist-dir DIR]
    python -m training --list

A run becomes the newest version of the model in the data location (DATA_DIR, see datadir.py),
serving from then on, also in an app running on the same data location; the shipped exports/
are never written. With --exports-dir DIR the files go into DIR instead (no version).

Prints one line per event, flushed:
    PROGRESS:{"progress": 45.0, "status": "Epoch 3/10, Batch 5/12", "accuracy": 0.9234, ...}
and finally RESULT:{...}. Exit status: 0 on success, 2 for a bad command line (unknown
model, bad option), 1 when training cannot run or fails (TensorFlow or MNIST missing, ...),
130 when interrupted; the reason is one line on stderr.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import sys

from training.events import Progress, Result
from training.registry import MODELS, get_model

EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130


class _UsageError(Exception):
    pass


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # one clear line instead of argparse's usage dump
        raise _UsageError(f"{message} (see python -m training --help)")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="python -m training", description="Train a Digit Studio model and export it (native + ONNX).")
    parser.add_argument("model", nargs="?", help=f"model to train: {', '.join(MODELS)}")
    parser.add_argument("--list", action="store_true", help="list the models and exit")
    parser.add_argument("--quick", action="store_true", help="start from the model's QUICK (miniature) options")
    parser.add_argument("--epochs", type=int, help="passes over the training split")
    parser.add_argument("--batch-size", type=int, help="mini-batch size")
    parser.add_argument("--learning-rate", type=float, help="initial step size")
    parser.add_argument("--limit", type=int, help="use only the first N training images")
    parser.add_argument("--seed", type=int, help="random seed")
    parser.add_argument("--include-drawings", action="store_true", default=None,
                        help="mix the corrected drawings ($DRAWINGS_DB) into the training data (issue 12)")
    parser.add_argument("--fine-tune", action="store_true", default=None,
                        help="continue from the serving model on the drawings and an MNIST sample (with --include-drawings)")
    parser.add_argument("--exports-dir", help="write the model files into this folder instead of keeping them as "
                                              "a new serving version in the data location ($DATA_DIR)")
    parser.add_argument("--mnist-dir", help="folder (or .npz) holding MNIST (default: $MNIST_DIR, then the cache)")
    return parser


def list_models() -> None:
    for spec in MODELS.values():
        reason = spec.unavailable_reason()
        state = f"unavailable: {reason}" if reason else "available"
        print(f"{spec.name}\t{spec.title} - {spec.description} [{state}]")


def _emit(prefix: str, data: dict) -> None:
    print(f"{prefix}:{json.dumps(data, default=str)}", flush=True)


def run(argv: list[str] | None = None) -> int:
    from inference import privacy

    privacy.apply_environment()  # before onnxruntime loads (the export checks parity with it): no telemetry
    try:
        args = build_parser().parse_args(argv)
        if args.list:
            list_models()
            return 0
        if not args.model:
            raise _UsageError(f"name a model to train ({', '.join(MODELS)}) or use --list")
        try:
            spec = get_model(args.model)
        except KeyError as error:
            raise _UsageError(error.args[0]) from None
    except _UsageError as error:
        _fail(f"error: {error}")
        return EXIT_USAGE

    reason = spec.unavailable_reason()
    if reason:
        _fail(f"error: {reason}")
        return EXIT_FAILED
    try:
        base = spec.quick() if args.quick else spec.defaults()
    except ImportError as error:
        _fail(f"error: {spec.name}'s trainer ({spec.module}) cannot be imported: {error}")
        return EXIT_FAILED
    try:
        options = base.updated(epochs=args.epochs, batch_size=args.batch_size, learning_rate=args.learning_rate,
                               limit=args.limit, seed=args.seed, include_drawings=args.include_drawings,
                               fine_tune=args.fine_tune).validate()
        spec.check_options(options)  # issue 21 item 5: options its trainer does not honour
    except ValueError as error:
        _fail(f"error: {error}")
        return EXIT_USAGE
    return _train(spec, options, args)


def _train(spec, options, args) -> int:
    from training.artifacts import commit_gate
    from training.mnist import load_mnist

    trainer = None
    saved = []  # the run's files were renamed into place (training/artifacts.py's commit gate)

    @contextlib.contextmanager
    def note_saved():
        yield
        saved.append(True)

    try:
        data = load_mnist(args.mnist_dir)
        trainer = spec.trainer()(options, data=data, exports_dir=args.exports_dir)
        with commit_gate(note_saved):
            for event in trainer:
                if isinstance(event, Progress):
                    _emit("PROGRESS", event.to_dict())
                elif isinstance(event, Result):
                    _emit("RESULT", event.to_dict())
        return 0
    except KeyboardInterrupt:
        if trainer is not None:
            trainer.close()  # cancels: before the save, the previous model files stay in place
        if saved:  # Ctrl+C came after the renames (they are never interrupted midway)
            _fail(f"error: training {spec.name} interrupted after its new model files were saved; "
                  "they are in place")
        else:
            _fail(f"error: training {spec.name} interrupted; the previous model files are unchanged")
        return EXIT_INTERRUPTED
    except FileNotFoundError as error:  # MNIST not found: its message lists the places and the fixes
        _fail(f"error: {error}")
        return EXIT_FAILED
    except Exception as error:  # noqa: BLE001 - the CLI's job is to turn any failure into one clear line
        _fail(f"error: training {spec.name} failed: {type(error).__name__}: {error}")
        return EXIT_FAILED


def _fail(message: str) -> None:
    # One line: multi-line messages (e.g. the places searched for MNIST) are joined.
    print(" ".join(message.split()), file=sys.stderr, flush=True)


def main() -> None:
    sys.exit(run())


if __name__ == "__main__":
    main()
