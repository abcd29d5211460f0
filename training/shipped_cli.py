"""The command line shared by the tools that update the shipped exports in place with MNIST at hand
(training/backfill_card.py, training/native_calibration.py): the same two options, the same errors."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any, Callable


def run(argv: list[str] | None, prog: str, description: str, action: Callable[[Path, Any, argparse.Namespace], Any],
        add_arguments: Callable[[argparse.ArgumentParser], None] | None = None, failure: str = "failed") -> int:
    """Parse `--exports-dir` and `--mnist-dir` (plus `add_arguments`), load MNIST, call
    `action(exports folder, mnist, args)`; exit code 0, or 1 with the reason on stderr."""
    parser = argparse.ArgumentParser(prog=prog, description=description)
    parser.add_argument("--exports-dir", help="the exports folder (default: $EXPORTS_DIR or ./exports)")
    parser.add_argument("--mnist-dir", help="folder (or .npz) holding MNIST (default: $MNIST_DIR, then the cache)")
    if add_arguments is not None:
        add_arguments(parser)
    args = parser.parse_args(argv)

    from training.artifacts import exports_dir
    from training.mnist import MnistError, load_mnist

    try:
        data = load_mnist(args.mnist_dir)
    except (MnistError, OSError) as error:
        print(str(error), file=sys.stderr)
        return 1
    try:
        action(exports_dir(args.exports_dir), data, args)
    except (OSError, ValueError, RuntimeError) as error:
        print(f"{failure}: {error}", file=sys.stderr)
        return 1
    return 0
