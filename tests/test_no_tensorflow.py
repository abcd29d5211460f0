"""Without TensorFlow: the package imports, Model 1 trains, Models 2 and 3 say clearly why they cannot.

Each check runs in a fresh interpreter where `import tensorflow` fails, as on a machine
without it (`sys.modules["tensorflow"] = None` makes the import raise ModuleNotFoundError
and importlib.util.find_spec return None).
"""
from __future__ import annotations

import json
import subprocess

import pytest

from tests.app_server import run_python

BLOCK_TENSORFLOW = (
    "import sys\n"
    "sys.modules['tensorflow'] = None\n"
    "try:\n"
    "    import tensorflow\n"
    "except ImportError:\n"
    "    pass\n"
    "else:\n"
    "    raise SystemExit('tensorflow is not blocked')\n"
)


def run_without_tensorflow(code: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return run_python(BLOCK_TENSORFLOW + code, timeout=300, env=env)


@pytest.mark.parametrize("name", ["model2", "model3"])
def test_package_imports_and_keras_models_report_tensorflow_missing(name):
    result = run_without_tensorflow(
        "import json, training, training.registry, training.mnist, training.export, training.model1_logreg\n"
        "import training.model3_cnn, training.keras_training\n"
        "from training.registry import get_model\n"
        f"spec = get_model({name!r})\n"
        "reason = spec.unavailable_reason()\n"
        "try:\n"
        "    spec.trainer()\n"
        "except RuntimeError as error:\n"
        "    raised = str(error)\n"
        "print(json.dumps({'reason': reason, 'raised': raised, 'model1': get_model('model1').unavailable_reason()}))\n"
    )
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout)
    assert out["reason"].startswith(f"TensorFlow is not installed, so Model {name[-1]}")
    assert "pip install -r requirements.txt" in out["reason"]
    assert out["raised"] == out["reason"]
    assert out["model1"] is None


@pytest.mark.slow
def test_model1_trains_without_tensorflow(mnist_dir, tmp_path):
    result = run_without_tensorflow(
        "import json\n"
        "from training.mnist import load_mnist\n"
        "from training.model1_logreg import QUICK, train\n"
        f"events = list(train(QUICK.updated(limit=500, epochs=1), data=load_mnist({str(mnist_dir)!r}),"
        f" exports_dir={str(tmp_path)!r}))\n"
        # The Models tab's figures of the new model: test-set figures recorded, weights read from its ONNX file.
        "from inference.predictor import Predictor\n"
        "from training.registry import MODELS\n"
        "from ui.learned_view import figures\n"
        "from ui.model_insights import ModelInsights\n"
        f"shown = figures(MODELS['model1'], ModelInsights(Predictor({str(tmp_path)!r})))\n"
        "assert sys.modules['tensorflow'] is None\n"
        "print(json.dumps({'progress': events[-2].progress, 'accuracy': events[-1].test_accuracy,\n"
        "                  'drawn': [f is not None for f in (shown.confusion, shown.learned, shown.mistakes)],\n"
        "                  'note': shown.confusion_note}))\n"
    )
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout.strip().splitlines()[-1])
    assert out["progress"] == 100 and out["accuracy"] > 0.7
    assert out["drawn"] == [True, True, True] and "recorded with the model" in out["note"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model1.joblib", "model1.json", "model1.onnx"]


@pytest.mark.parametrize("name", ["model2", "model3"])
def test_cli_for_keras_models_fails_with_the_reason(tmp_path, name):
    result = run_without_tensorflow(
        "import runpy\n"
        f"sys.argv = ['python -m training', {name!r}, '--quick', '--exports-dir', " + repr(str(tmp_path)) + "]\n"
        "runpy.run_module('training', run_name='__main__')\n"
    )
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: TensorFlow is not installed"), result.stderr
    assert "PROGRESS" not in result.stdout and list(tmp_path.iterdir()) == []
