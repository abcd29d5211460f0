"""The model registry: one entry per model, lazy imports (no TensorFlow for Model 1)."""
from __future__ import annotations

import importlib
import importlib.util

import pytest

from tests.app_server import run_python
from training.options import TrainOptions
from training.registry import MODELS, get_model



def test_registry_lists_both_models():
    assert list(MODELS) == ["model1", "model2"]
    for name, spec in MODELS.items():
        assert spec.name == name and spec.title and spec.description
        assert importlib.util.find_spec(spec.module) is not None, spec.module
    assert get_model("model1").native_format == "joblib"
    assert get_model("model2").native_format == "keras"
    assert get_model("model2").requires == ("tensorflow",)


def test_unknown_model_is_a_key_error_naming_the_choices():
    with pytest.raises(KeyError, match="unknown model 'cnn3'; choose one of: model1, model2"):
        get_model("cnn3")


def test_every_model_module_exposes_the_trainer_contract():
    for spec in MODELS.values():
        module = importlib.import_module(spec.module)
        assert callable(module.train)
        for options in (spec.defaults(), spec.quick()):
            assert isinstance(options, TrainOptions)
            options.validate()
        assert spec.quick().limit is not None and spec.quick().limit < 10_000, "QUICK is a miniature run"


def test_model1_is_available_and_its_trainer_is_the_module_function():
    from training import model1_logreg

    spec = get_model("model1")
    assert spec.unavailable_reason() is None
    assert spec.trainer() is model1_logreg.train
    assert spec.defaults() is model1_logreg.DEFAULTS and spec.quick() is model1_logreg.QUICK


def test_registry_and_model1_do_not_import_tensorflow():
    # In a fresh interpreter: TensorFlow takes ~8 s to import and must stay out of everything but Model 2 training.
    code = (
        "import sys\n"
        "from training.registry import MODELS, get_model\n"
        "for spec in MODELS.values():\n"
        "    spec.defaults(); spec.quick(); spec.unavailable_reason()\n"
        "get_model('model1').trainer()\n"
        "import training.model1_logreg, training.mnist, training.export, training.deskew, training.__main__\n"
        "loaded = sorted(m for m in sys.modules if m.split('.')[0] in ('tensorflow', 'keras', 'tf2onnx'))\n"
        "assert not loaded, loaded\n"
    )
    result = run_python(code)
    assert result.returncode == 0, result.stderr
