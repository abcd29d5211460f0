"""Add the Models tab's test-set figures to exports trained before they were recorded, without retraining.

    python -m training.backfill_card [--exports-dir DIR] [--mnist-dir DIR] [--force]

For every registry model with an export in exports/ (the shipped models, version 1), runs that
ONNX file on the MNIST test set through onnxruntime and writes the confusion matrix and the most
confident mistakes (training/evaluation.py) into the model's metadata JSON, atomically. Nothing else changes: the ONNX and native files are
only read, and each ONNX file's SHA-256 is checked to be the same after the write. A record
already measured on the same ONNX bytes is left alone unless --force.

Prints one line per file; exit status 0 when done, 1 when MNIST or a file cannot be read.
"""
from __future__ import annotations

import datetime as _dt
import sys
from pathlib import Path
from typing import Iterator

from training import evaluation
from training.artifacts import ArtifactWriter, artifact_paths, read_metadata
from training.registry import MODELS


def model_files(exports: Path) -> Iterator[tuple[str, Path, Path]]:
    """(label, onnx path, metadata path) of every registry model in the exports folder (version 1, the
    shipped models). Later versions are written by trainers that record the figures themselves, and a
    version's folder never changes once kept (training/model_versions.py)."""
    for name, spec in MODELS.items():
        paths = artifact_paths(name, spec.native_format, exports)
        if paths["onnx"].is_file():
            yield f"{exports.name}/{paths['onnx'].name}", paths["onnx"], paths["metadata"]


def backfill(exports: Path, test_images, test_labels, *, force: bool = False, out=None) -> list[Path]:
    """Write the test-set figures into every export's metadata that lacks them; returns the files written."""
    out = out or sys.stdout
    written = []
    today = _dt.date.today().isoformat()
    for label, onnx_path, metadata_path in model_files(exports):
        onnx_bytes = onnx_path.read_bytes()
        sha = evaluation.sha256_hex(onnx_bytes)
        metadata = read_metadata(metadata_path) or {}
        if not force and evaluation.describes(metadata.get(evaluation.KEY), sha):
            print(f"{label}: already recorded for this ONNX file", file=out)
            continue
        results = evaluation.evaluate(onnx_bytes, test_images, test_labels, source=(
            f"measured on {today} by python -m training.backfill_card (this ONNX file, not retrained)"))
        metadata[evaluation.KEY] = results
        with ArtifactWriter({"metadata": metadata_path}) as writer:
            writer.stage_json("metadata", metadata)
            writer.commit()
        if evaluation.sha256_hex(onnx_path.read_bytes()) != sha:  # never expected: this script only reads it
            raise RuntimeError(f"{onnx_path} changed while its figures were written")
        written.append(metadata_path)
        print(f"{label}: {results['accuracy']:.2%} of {results['images']:,} test images, "
              f"{len(results['confident_mistakes'])} confident mistakes -> {metadata_path.name}", file=out)
    return written


def main(argv: list[str] | None = None) -> int:
    from training import shipped_cli

    def add_arguments(parser) -> None:
        parser.add_argument("--force", action="store_true", help="measure again even where a record exists")

    return shipped_cli.run(argv, "python -m training.backfill_card", __doc__.splitlines()[0],
                           lambda folder, data, args: backfill(folder, data.x_test, data.y_test, force=args.force),
                           add_arguments, failure="backfill failed")


if __name__ == "__main__":
    sys.exit(main())
