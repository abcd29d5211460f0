"""Refit a trained model's verdict thresholds without retraining it.

    python -m training.refit_verdict model3 --exports-dir exports [--mnist-dir DIR]

The verdict's thresholds (inference/verdict.py) are a function of two things only: the model's
calibrated probabilities on the validation split and the flag budget (training/calibration.py,
and the model's registry entry). When the budget changes, retraining would change the weights too,
and with them every figure measured on them; this refits the thresholds on the validation split the
trainer used (the options its metadata records, on the same MNIST files), measures the verdict rates
again on MNIST test and on the drawn evaluation sets, and writes the ONNX file (the predictor reads the
thresholds from its metadata) and the JSON beside it together (training/artifacts.ArtifactWriter:
both or neither). The weights, the temperature and every accuracy and calibration figure stay as they
were; the run is recorded under "verdict_refitted".

It rewrites the exports folder it is given (the shipped exports/, or one `python -m training --exports-dir`
wrote): always named, since the shipped files are tracked and nothing else writes them by default.
The versions in the app's data location are left alone: their files are checked against the hashes
recorded when they were written (training/model_versions.py).
Exit status: 0 done, 2 bad command line, 1 when it cannot refit (files missing or not matching, MNIST
missing or other than the model was trained on); the reason is one line on stderr.
"""
from __future__ import annotations

import argparse
import datetime as _dt
import hashlib
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np

EXIT_FAILED = 1
# Keys the drawn-set measurement writes that depend on the thresholds; the rest (accuracy, ECE) does not.
_VERDICT_KEYS = ("verdict_of_correct", "verdict", "flagged")


class RefitError(Exception):
    """Why a model's verdict cannot be refitted, in one line."""


def refit(name: str, exports_dir: str | Path, data=None) -> dict[str, Any]:
    """Refit `name`'s thresholds in the folder `exports_dir`.

    `data`: the MnistData the model was trained on (None: load_mnist()). Returns the record stored under
    "verdict_refitted" (before and after thresholds, the budget). Raises RefitError, with nothing written.
    """
    import onnx

    from training import calibration, evaluation
    from training.artifacts import ArtifactWriter, artifact_paths, read_metadata
    from training.canvas_data import assemble_training_data
    from training.mnist import load_mnist
    from training.onnx_contract import run_onnx, to_model_input
    from training.options import resolve_options
    from training.registry import get_model
    from training.strokes import run_to_end

    spec = get_model(name)  # KeyError for an unknown name
    paths = artifact_paths(name, spec.native_format, exports_dir)
    metadata = read_metadata(paths["metadata"])
    if not isinstance(metadata, dict) or not paths["onnx"].is_file():
        raise RefitError(f"no readable {paths['metadata'].name} and {paths['onnx'].name} in {paths['onnx'].parent}")
    onnx_bytes = paths["onnx"].read_bytes()
    if metadata.get("onnx_sha256") != hashlib.sha256(onnx_bytes).hexdigest():
        raise RefitError(f"{paths['onnx'].name} is not the file {paths['metadata'].name} describes "
                         "(its SHA-256 differs): retrain the model instead")
    if not isinstance(metadata.get("verdict"), dict) or not isinstance(metadata.get("options"), dict):
        raise RefitError(f"{paths['metadata'].name} records no verdict or training options to refit")
    data = load_mnist() if data is None else data
    trained_on = (metadata.get("data") or {}).get("sha256")
    if trained_on and getattr(data, "sha256", None) != trained_on:
        raise RefitError("these MNIST files are not the ones the model was trained on (their SHA-256 "
                         "differs), so the validation split would not be the one it was fitted on")

    options = resolve_options({key: value for key, value in metadata["options"].items()
                               if key not in ("include_drawings", "fine_tune")}, spec.defaults())
    canvas = run_to_end(assemble_training_data(data, options))  # the trainer's validation split

    def served(model_input: np.ndarray) -> np.ndarray:  # calibrated: the temperature is in the graph
        return run_onnx(onnx_bytes, model_input)

    val = served(to_model_input(canvas.x_val))
    other = served(to_model_input(canvas.x_val_other)) if len(canvas.x_val_other) else np.zeros((0, 10))
    test = served(to_model_input(data.x_test))
    verdict = calibration.fit_model_verdict(name, val, canvas, other, test, np.asarray(data.y_test))
    thresholds = calibration.verdict_thresholds(verdict)

    updated = {**metadata, "verdict": verdict}
    if isinstance(metadata.get("drawn_digits"), dict):
        updated["drawn_digits"] = _drawn_with_new_verdicts(metadata["drawn_digits"], served, thresholds, data,
                                                          quick=options.limit is not None)
    record = {"at": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
              "flag_budget": verdict["flag_budget"],
              "before": {key: metadata["verdict"].get(key) for key in thresholds}, "after": thresholds,
              "how": f"python -m training.refit_verdict {name} --exports-dir DIR: thresholds refitted on the "
                     "validation split without retraining; weights, temperature and accuracy unchanged"}
    updated["verdict_refitted"] = record

    model = onnx.load_from_string(onnx_bytes)
    properties = {prop.key: prop.value for prop in model.metadata_props}
    properties.update({key: json.dumps(updated[key]) for key in ("verdict", "drawn_digits", "verdict_refitted")
                       if key in updated})
    del model.metadata_props[:]
    for key, value in properties.items():
        model.metadata_props.add(key=key, value=value)
    new_bytes = model.SerializeToString()
    # Only the metadata changed: the file must still compute exactly what it computed.
    probe = to_model_input(data.x_test[:256])
    if not np.array_equal(run_onnx(new_bytes, probe), run_onnx(onnx_bytes, probe)):
        raise RefitError("the rewritten ONNX file does not compute what the original did; nothing written")
    if isinstance(metadata.get("test_results"), dict):  # names the ONNX bytes it was measured on: measured again
        updated["test_results"] = evaluation.evaluate(new_bytes, data.x_test, data.y_test,
                                                      source=metadata["test_results"].get("source",
                                                                                          "measured when refitted"))
    updated["onnx_sha256"] = hashlib.sha256(new_bytes).hexdigest()
    with ArtifactWriter({"onnx": paths["onnx"], "metadata": paths["metadata"]}) as writer:
        writer.stage_bytes("onnx", new_bytes)
        writer.stage_json("metadata", updated)
        writer.commit()
    return record


def _drawn_with_new_verdicts(drawn: dict[str, Any], served, thresholds: dict[str, float], data,
                             quick: bool) -> dict[str, Any]:
    """The "drawn_digits" record with its verdict rates measured again (accuracy and ECE kept as they were:
    scored here on calibrated outputs, their "before" would not be the uncalibrated model's)."""
    from training.calibration import measure_drawn_sets

    measured = measure_drawn_sets(served, 1.0, thresholds, data, quick=quick)
    if measured is None:  # the benchmarks package is not here: the old rates would be wrong, so none
        return {**drawn, "verdicts_not_measured": "refitted without the benchmarks' drawn sets"}
    merged = json.loads(json.dumps(drawn))
    for name, fresh in measured["sets"].items():
        if name in merged.get("sets", {}):
            merged["sets"][name].update({key: fresh[key] for key in _VERDICT_KEYS if key in fresh})
    if "all_digit_sets" in merged and "all_digit_sets" in measured:
        merged["all_digit_sets"]["verdict_of_correct"] = measured["all_digit_sets"]["verdict_of_correct"]
    return merged


def main(argv: list[str] | None = None) -> int:
    from training.registry import MODELS

    parser = argparse.ArgumentParser(prog="python -m training.refit_verdict", description=__doc__.splitlines()[0])
    parser.add_argument("model", choices=sorted(MODELS), help="the registry model whose thresholds to refit")
    parser.add_argument("--exports-dir", required=True,
                        help="the folder holding its files (the shipped ones: --exports-dir exports)")
    parser.add_argument("--mnist-dir", help="MNIST's folder (default: $MNIST_DIR)")
    args = parser.parse_args(argv)
    if args.mnist_dir:
        import os

        os.environ["MNIST_DIR"] = args.mnist_dir
    try:
        record = refit(args.model, args.exports_dir)
    except (RefitError, FileNotFoundError, ValueError) as error:
        print(f"refit_verdict: {error}", file=sys.stderr)
        return EXIT_FAILED
    print(json.dumps(record), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
