"""Refitting a trained model's verdict thresholds without retraining (training/refit_verdict.py): the
thresholds the predictor reads change with the budget, nothing the model computes does, and a folder
whose files do not match, or other MNIST files, are refused with nothing written. On a QUICK Model 1
export (a few seconds); needs MNIST_DIR."""
from __future__ import annotations

import dataclasses
import hashlib
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

from inference.predictor import decode_metadata_props
from inference.verdict import thresholds_from
from training import calibration, model1_logreg, refit_verdict
from training.onnx_contract import run_onnx, to_model_input
from training.registry import MODELS

SMALL = model1_logreg.QUICK.updated(limit=1000)
ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def trained(mnist, tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("model1_trained")
    list(model1_logreg.train(SMALL, data=mnist, exports_dir=folder))
    return folder


@pytest.fixture
def folder(trained, tmp_path) -> Path:
    """A copy of the trained export to refit."""
    copy = tmp_path / "exports"
    shutil.copytree(trained, copy)
    return copy


def served_thresholds(onnx_path: Path) -> dict[str, float]:
    """What the predictor reads: the thresholds in the ONNX file's metadata (inference/predictor.py)."""
    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    return thresholds_from(decode_metadata_props(session.get_modelmeta().custom_metadata_map))


def with_drawn_budget(monkeypatch, budget: float | None) -> None:
    monkeypatch.setitem(MODELS, "model1", dataclasses.replace(MODELS["model1"], drawn_flag_budget=budget))


def test_the_same_budget_refits_the_same_thresholds(folder, mnist):
    before = json.loads((folder / "model1.json").read_text())
    record = refit_verdict.refit("model1", folder, data=mnist)
    after = json.loads((folder / "model1.json").read_text())
    for key in ("digit_at_least", "pair_at_least"):
        # The trainer fitted them on float64 calibrated outputs, the refit on the ONNX file's float32 ones.
        assert after["verdict"][key] == pytest.approx(before["verdict"][key], abs=1e-4)
        assert record["before"][key] == before["verdict"][key]
    assert record["flag_budget"] == {"mnist": 0.006 * 0.25, "drawn": 0.012 * 0.25}  # Model 1 keeps a quarter


def test_a_new_budget_changes_what_is_served_and_nothing_the_model_computes(folder, mnist, monkeypatch):
    # Far above the defaults, so the threshold moves well clear of the float32 difference: a tenth of
    # the correctly read validation digits of each group may be flagged (0.4 times Model 1's quarter).
    # The drawn group's budget comes from the registry entry: without it, 1.2% would keep the threshold.
    monkeypatch.setitem(calibration.FLAG_BUDGET, "mnist", 0.4)
    with_drawn_budget(monkeypatch, 0.4)
    before = json.loads((folder / "model1.json").read_text())
    onnx_before = (folder / "model1.onnx").read_bytes()
    native_before = (folder / "model1.joblib").read_bytes()

    refit_verdict.refit("model1", folder, data=mnist)
    after = json.loads((folder / "model1.json").read_text())
    onnx_after = (folder / "model1.onnx").read_bytes()

    # Served: the predictor's thresholds are the new ones, higher with the larger budget.
    assert served_thresholds(folder / "model1.onnx") == calibration.verdict_thresholds(after["verdict"])
    assert after["verdict"]["digit_at_least"] > before["verdict"]["digit_at_least"] + 0.05
    assert after["verdict"]["flag_budget"] == {"mnist": pytest.approx(0.1), "drawn": pytest.approx(0.1)}
    assert after["verdict_refitted"]["after"] == calibration.verdict_thresholds(after["verdict"])
    # More of MNIST test is flagged with the higher threshold, measured again on the new thresholds.
    mnist_read_as_digits = [record["verdict"]["mnist_test"]["all_digits"]["digit"] for record in (before, after)]
    assert mnist_read_as_digits[1] < mnist_read_as_digits[0]
    # The drawn sets' verdict rates are measured again; their accuracy and calibration are kept.
    for name, drawn in after["drawn_digits"]["sets"].items():
        old = before["drawn_digits"]["sets"][name]
        assert {key: value for key, value in drawn.items() if key not in ("verdict_of_correct", "verdict", "flagged")} \
            == {key: value for key, value in old.items() if key not in ("verdict_of_correct", "verdict", "flagged")}
    assert after["drawn_digits"]["all_digit_sets"]["verdict_of_correct"]["digit"] < \
        before["drawn_digits"]["all_digit_sets"]["verdict_of_correct"]["digit"]

    # The model computes exactly what it did; the JSON names the new ONNX file; the native file is untouched.
    images = to_model_input(mnist.x_test[:500])
    assert np.array_equal(run_onnx(onnx_after, images), run_onnx(onnx_before, images))
    assert after["onnx_sha256"] == hashlib.sha256(onnx_after).hexdigest() == after["test_results"]["onnx_sha256"]
    assert after["test_results"]["accuracy"] == before["test_results"]["accuracy"]
    assert (folder / "model1.joblib").read_bytes() == native_before
    assert after["temperature"] == before["temperature"] and after["test_accuracy"] == before["test_accuracy"]
    assert not [path.name for path in folder.iterdir() if ".tmp-" in path.name]


def test_files_that_do_not_match_are_refused_with_nothing_written(folder, mnist):
    metadata = json.loads((folder / "model1.json").read_text())
    metadata["onnx_sha256"] = "0" * 64  # the JSON describes another ONNX file
    (folder / "model1.json").write_text(json.dumps(metadata))
    files = {path.name: path.read_bytes() for path in folder.iterdir()}
    with pytest.raises(refit_verdict.RefitError, match="not the file"):
        refit_verdict.refit("model1", folder, data=mnist)
    assert {path.name: path.read_bytes() for path in folder.iterdir()} == files


def test_other_mnist_files_are_refused(folder, mnist):
    other = dataclasses.replace(mnist, sha256="f" * 64)  # the same arrays, named as other files
    files = {path.name: path.read_bytes() for path in folder.iterdir()}
    with pytest.raises(refit_verdict.RefitError, match="not the ones the model was trained on"):
        refit_verdict.refit("model1", folder, data=other)
    assert {path.name: path.read_bytes() for path in folder.iterdir()} == files


@pytest.mark.parametrize("arguments, status, words", [
    (["nope", "--exports-dir", "{missing}"], 2, "invalid choice"),
    (["model1", "--exports-dir", "{missing}"], 1, "no readable model1.json"),
    (["model1", "--exports-dir", "{not_an_object}"], 1, "no readable model1.json"),
    # The shipped exports/ are tracked: they are written only when named.
    (["model1"], 2, "--exports-dir"),
])
def test_the_command_line_says_why_it_cannot_refit(arguments, status, words, tmp_path):
    odd = tmp_path / "odd"
    odd.mkdir()
    (odd / "model1.json").write_text("[1, 2, 3]")  # JSON, but not a model's metadata
    (odd / "model1.onnx").write_bytes(b"onnx")
    arguments = [argument.format(missing=tmp_path / "missing", not_an_object=odd) for argument in arguments]
    done = subprocess.run([sys.executable, "-m", "training.refit_verdict", *arguments], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == status and words in done.stderr
    assert "Traceback" not in done.stderr
