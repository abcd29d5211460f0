"""`python -m training`: the original trainers' PROGRESS line format, exit codes and messages."""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import pytest

from tests.app_server import ROOT
from training.registry import MODELS
PROGRESS_LINE = re.compile(r'^PROGRESS:(\{"progress": \d+(\.\d+)?, "status": ".*\})$')
RESULT_LINE = re.compile(r"^RESULT:(\{.*\})$")


def cli(*args: str, env: dict[str, str] | None = None, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "training", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, **(env or {})})


def one_line_error(result: subprocess.CompletedProcess) -> str:
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ") and "Traceback" not in result.stderr
    return lines[0]


@pytest.mark.slow
def test_train_prints_progress_lines_then_result(mnist_dir, tmp_path):
    result = cli("model1", "--quick", "--limit", "600", "--epochs", "2", "--exports-dir", str(tmp_path),
                 "--mnist-dir", str(mnist_dir))
    assert result.returncode == 0, result.stderr
    lines = result.stdout.strip().splitlines()
    progress_lines, result_line = lines[:-1], lines[-1]
    events = []
    for line in progress_lines:
        match = PROGRESS_LINE.match(line)
        assert match, f"not a PROGRESS line: {line!r}"
        events.append(json.loads(match.group(1)))
    values = [event["progress"] for event in events]
    assert values == sorted(values) and values[-1] == 100
    assert any(re.fullmatch(r"Epoch 2/2, Batch \d+/\d+", event["status"]) for event in events)
    assert any(isinstance(event.get("accuracy"), float) for event in events)

    final = json.loads(RESULT_LINE.match(result_line).group(1))
    assert final["model"] == "model1" and 0 < final["test_accuracy"] <= 1
    assert final["metadata"]["options"]["limit"] == 600
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model1.joblib", "model1.json", "model1.onnx"]


def test_unknown_model_names_the_valid_ones():
    result = cli("model9")
    assert result.returncode == 2 and result.stdout == ""
    assert one_line_error(result) == f"error: unknown model 'model9'; choose one of: {', '.join(MODELS)}"


def test_bad_option_values_are_usage_errors():
    result = cli("model1", "--epochs", "0")
    assert result.returncode == 2
    assert "epochs must be between 1 and 100, got 0" in one_line_error(result)
    result = cli("model1", "--learning-rate", "fast")
    assert result.returncode == 2
    assert "--learning-rate: invalid float value: 'fast'" in one_line_error(result)
    result = cli()
    assert result.returncode == 2 and "--list" in one_line_error(result)


def test_missing_mnist_fails_with_the_places_tried(tmp_path):
    env = {"MNIST_DIR": str(tmp_path / "nowhere"), "MNIST_CACHE": str(tmp_path / "cache"), "MNIST_DOWNLOAD": "0"}
    result = cli("model1", "--quick", "--exports-dir", str(tmp_path / "exports"), env=env)
    assert result.returncode == 1 and "PROGRESS" not in result.stdout
    message = one_line_error(result)
    assert "MNIST data set not found" in message and str(tmp_path / "nowhere") in message
    assert "download: disabled (MNIST_DOWNLOAD=0 is set)" in message
    assert "set the environment variable MNIST_DIR" in message and "--mnist-dir" in message
    assert "download=" not in message  # a Python argument: no CLI user can set it
    assert not (tmp_path / "exports").exists()


def test_list_shows_every_registered_model():
    result = cli("--list")
    assert result.returncode == 0, result.stderr
    names = [line.split("\t")[0] for line in result.stdout.strip().splitlines()]
    assert names == list(MODELS) == ["model1", "model2", "model3"]
    assert "Model 1: logistic regression" in result.stdout and "Model 3: modern CNN" in result.stdout


def test_a_run_becomes_a_serving_version_in_the_data_location_and_exports_stay_as_shipped(mnist_dir, tmp_path,
                                                                                            exports_copy):
    """Issue 20: without --exports-dir the run is the newest version in DATA_DIR; exports/ is not written."""
    from training.model_versions import ModelVersions

    exports = {path.name: path.read_bytes() for path in exports_copy.iterdir()}
    result = cli("model1", "--quick", "--limit", "600", "--epochs", "1", "--mnist-dir", str(mnist_dir),
                 env={"DATA_DIR": str(tmp_path / "data")})
    assert result.returncode == 0, result.stderr
    final = json.loads(RESULT_LINE.match(result.stdout.strip().splitlines()[-1]).group(1))
    folder = tmp_path / "data" / "versions" / "model1" / "2"
    assert final["metadata"]["version"] == 2 and final["paths"]["onnx"] == str(folder / "model1.onnx")
    versions = ModelVersions(data_dir=tmp_path / "data", shipped_dir=exports_copy)
    assert [(v["version"], v["serving"]) for v in versions.list("model1")] == [(2, True), (1, False)]
    assert versions.describe("model1", 2)["onnx_sha256"] == final["metadata"]["onnx_sha256"]
    assert {path.name: path.read_bytes() for path in exports_copy.iterdir()} == exports
