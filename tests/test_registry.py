"""The model registry: one entry per model, lazy imports (no TensorFlow for Model 1), any number of
models (issue 21 item 4) and what each trainer supports (item 5)."""
from __future__ import annotations

import importlib
import importlib.util
import json
import sys
import textwrap

import pytest

from tests.app_server import run_python
from training.options import TrainOptions
from training.registry import MODELS, PERSONAL_OPTIONS, ModelSpec, get_model

# A newcomer's model, as the README's "add a model" section describes it: one module and one entry.
TINY_MODULE = '''
from training.events import Progress, Result
from training.options import TrainOptions, resolve_options

DEFAULTS = TrainOptions(epochs=1, batch_size=32, learning_rate=0.1)
QUICK = TrainOptions(epochs=1, batch_size=32, learning_rate=0.1, limit=200)


def train(options=None, *, data=None, exports_dir=None):
    options = resolve_options(options, DEFAULTS)
    yield Progress(progress=0, status="Starting")
    yield Result(model="tiny9", test_accuracy=0.1, train_seconds=0.0, paths={}, metadata={})
'''


@pytest.fixture
def tiny_registry(tmp_path, monkeypatch):
    """MODELS with a fourth, tiny model for this test only (its module on a temporary sys.path)."""
    (tmp_path / "tiny9_model.py").write_text(TINY_MODULE)
    monkeypatch.syspath_prepend(str(tmp_path))
    spec = ModelSpec(name="tiny9", title="Model 9: tiny", description="a newcomer's trainer that ignores drawings",
                     module="tiny9_model", native_format="joblib")  # supports nothing personal: the default
    monkeypatch.setitem(MODELS, "tiny9", spec)
    yield spec
    sys.modules.pop("tiny9_model", None)


def check_trainer_contract(spec: ModelSpec) -> None:
    assert spec.title and spec.description and importlib.util.find_spec(spec.module) is not None, spec.module
    module = importlib.import_module(spec.module)
    assert callable(module.train)
    for options in (spec.defaults(), spec.quick()):
        assert isinstance(options, TrainOptions)
        options.validate()
    assert spec.quick().limit is not None and spec.quick().limit < 10_000, "QUICK is a miniature run"
    assert set(spec.supports) <= set(PERSONAL_OPTIONS), spec.supports


def test_registry_lists_the_models_in_order():
    assert list(MODELS) == ["model1", "model2", "model3"]
    for name, spec in MODELS.items():
        assert spec.name == name
    assert get_model("model1").native_format == "joblib"
    for name in ("model2", "model3"):
        assert get_model(name).native_format == "keras" and get_model(name).requires == ("tensorflow",)
    # Models 1-3 honour both personal options (training/personal.py).
    assert all(set(spec.supports) == set(PERSONAL_OPTIONS) for spec in MODELS.values())


def test_unknown_model_is_a_key_error_naming_the_choices():
    with pytest.raises(KeyError, match=f"unknown model 'cnn3'; choose one of: {', '.join(MODELS)}"):
        get_model("cnn3")


def test_every_model_module_exposes_the_trainer_contract():
    for spec in MODELS.values():
        check_trainer_contract(spec)


def test_model1_is_available_and_its_trainer_is_the_module_function():
    from training import model1_logreg

    spec = get_model("model1")
    assert spec.unavailable_reason() is None
    assert spec.trainer() is model1_logreg.train
    assert spec.defaults() is model1_logreg.DEFAULTS and spec.quick() is model1_logreg.QUICK


def test_registry_and_model1_do_not_import_tensorflow():
    # In a fresh interpreter: TensorFlow takes ~8 s to import and must stay out of everything but Keras training.
    code = (
        "import sys\n"
        "from training.registry import MODELS, get_model\n"
        "for spec in MODELS.values():\n"
        "    spec.defaults(); spec.quick(); spec.unavailable_reason()\n"
        "get_model('model1').trainer()\n"
        "import training.model1_logreg, training.model2_cnn, training.model3_cnn, training.keras_training\n"
        "import training.mnist, training.export, training.deskew, training.__main__, training.lineup\n"
        "loaded = sorted(m for m in sys.modules if m.split('.')[0] in ('tensorflow', 'keras', 'tf2onnx'))\n"
        "assert not loaded, loaded\n"
    )
    result = run_python(code)
    assert result.returncode == 0, result.stderr


# --------------------------------------------------------------------------- any number of models (item 4)


def test_a_fourth_model_in_a_temporary_registry_meets_the_same_checks(tiny_registry):
    from training import lineup
    from training.jobs import JobManager

    assert list(MODELS)[-1] == "tiny9" and get_model("tiny9") is tiny_registry
    for spec in MODELS.values():  # the same contract test, now over four models
        check_trainer_contract(spec)
    with pytest.raises(KeyError, match="choose one of: model1, model2, model3, tiny9"):
        get_model("cnn3")
    # The words derived from the registry follow it.
    assert lineup.headline(MODELS).startswith("Draw a digit and four models read it as you draw (")
    assert lineup.headline(MODELS).endswith("CNN, modern CNN and tiny).")
    assert lineup.model_choices(MODELS) == '"model1", "model2", "model3", "tiny9" or "all"'
    described = lineup.described_choices(MODELS, "model2")
    assert described.startswith("'model2' (CNN, the default), 'model1' (logistic regression)")
    assert "'tiny9' (tiny)" in described and described.endswith("or 'all' (every model at once: one answer per model)")
    assert JobManager().status("tiny9")["model"] == "tiny9"


def test_the_readme_generator_makes_one_column_per_registered_model(tiny_registry):
    from benchmarks import readme as generator

    document = json.loads(generator.RESULTS.read_text())
    for section in ("accuracy", "training"):  # the run measured the tiny model too
        document["sections"][section]["data"]["tiny9"] = dict(document["sections"][section]["data"]["model1"])
    table = generator.model_table(document, MODELS)
    header, rule, what, accuracy, training, files = table[:6]
    assert header == "| | Model 1 | Model 2 | Model 3 | Model 9 |" and rule == "| --- | --- | --- | --- | --- |"
    assert all(row.count(" | ") == 4 for row in (what, accuracy, training, files))
    assert what.endswith("| a newcomer's trainer that ignores drawings |")  # its registry description
    model1_size = files.split("`exports/model1.onnx` (")[1].split(")")[0]  # the run's data, copied above
    assert files.endswith(f"| `exports/tiny9.joblib` / `exports/tiny9.onnx` ({model1_size}) |")
    # A model the run did not measure (added after it) says so instead of a KeyError.
    del document["sections"]["accuracy"]["data"]["tiny9"]
    accuracy_row = generator.model_table(document, MODELS)[3]
    assert accuracy_row.endswith(f"| {generator.NOT_MEASURED} |")


def test_the_cli_lists_a_fourth_model(tiny_registry, capsys):
    from training.__main__ import run

    assert run(["--list"]) == 0
    names = [line.split("\t")[0] for line in capsys.readouterr().out.splitlines()]
    assert names == ["model1", "model2", "model3", "tiny9"]


# --------------------------------------------------------------------------- a trainer's duties (item 5)


def test_a_spec_refuses_in_words_what_its_trainer_does_not_support(tiny_registry):
    plain = TrainOptions()
    assert tiny_registry.check_options(plain) is plain
    with pytest.raises(ValueError, match=r"Model 9: tiny's trainer does not support include_drawings \(mixing the "
                                         r"saved drawings into the training data\): train it without them"):
        tiny_registry.check_options(TrainOptions(include_drawings=True))
    with pytest.raises(ValueError, match=r"does not support include_drawings .* or fine_tune \(continuing the "
                                         r"serving model on the drawings\)"):
        tiny_registry.check_options(TrainOptions(include_drawings=True, fine_tune=True))
    half = ModelSpec(**{**tiny_registry.__dict__, "supports": ("include_drawings",)})
    assert half.check_options(TrainOptions(include_drawings=True)).include_drawings
    with pytest.raises(ValueError, match="does not support fine_tune .*: it supports only include_drawings"):
        half.check_options(TrainOptions(include_drawings=True, fine_tune=True))
    for spec in (get_model("model1"), get_model("model3")):  # the real trainers honour both
        spec.check_options(TrainOptions(include_drawings=True, fine_tune=True))


def test_the_job_manager_refuses_an_unsupported_option_before_starting(tiny_registry):
    from training.jobs import JobManager

    jobs = JobManager()
    with pytest.raises(ValueError, match="Model 9: tiny's trainer does not support include_drawings"):
        jobs.start("tiny9", {"include_drawings": True})
    assert jobs.status("tiny9")["running"] is False and jobs.status("tiny9")["status"] != "Starting"
    jobs.start("tiny9", {"preset": "quick"})  # without it the run starts
    assert jobs.join("tiny9", timeout=60)
    assert jobs.status("tiny9")["state"] == "succeeded" and jobs.status("tiny9")["accuracy"] == pytest.approx(0.1)


def test_the_cli_refuses_an_unsupported_option_in_one_line(tiny_registry, capsys):
    from training.__main__ import EXIT_USAGE, run

    assert run(["tiny9", "--include-drawings", "--fine-tune"]) == EXIT_USAGE
    error = capsys.readouterr().err.strip()
    assert error.startswith("error: Model 9: tiny's trainer does not support include_drawings") and "\n" not in error


def test_rest_and_the_train_tab_refuse_an_unsupported_option(tmp_path, exports_copy, mnist_dir):
    """A live app with the tiny model registered (through a start-up wrapper, as a newcomer's entry):
    POST /train/tiny9 with include_drawings is a 422 {"error"} in words; the Train tab shows its
    drawings controls disabled, saying so; Model 3's are enabled."""
    import httpx
    from gradio_client import Client

    from tests.app_server import running_app

    (tmp_path / "tiny9_model.py").write_text(TINY_MODULE)
    start = textwrap.dedent(f"""
        import runpy, sys
        sys.path.insert(0, {str(tmp_path)!r})
        from training.registry import MODELS, ModelSpec
        MODELS["tiny9"] = ModelSpec(name="tiny9", title="Model 9: tiny", description="ignores drawings",
                                    module="tiny9_model", native_format="joblib")
        sys.argv = sys.argv[1:]
        runpy.run_path("app.py", run_name="__main__")
    """)
    with running_app(exports_copy, tmp_path / "app.log", wrapper=(sys.executable, "-c", start),
                     MNIST_DIR=str(mnist_dir)) as app:
        refused = httpx.post(app.url + "train/tiny9", json={"include_drawings": True, "fine_tune": True}, timeout=30)
        assert refused.status_code == 422, refused.text
        assert refused.json() == {"error": "Model 9: tiny's trainer does not support include_drawings (mixing the "
                                           "saved drawings into the training data) or fine_tune (continuing the "
                                           "serving model on the drawings): train it without them"}
        assert httpx.get(app.url + "train_status/tiny9", timeout=30).json()["running"] is False
        config = httpx.get(app.url + "config", timeout=30).json()
        by_id = {c.get("props", {}).get("elem_id"): c["props"] for c in config["components"]}
        assert by_id["include-drawings-tiny9"]["interactive"] is False
        assert "does not support" in by_id["include-drawings-tiny9"]["info"]
        assert by_id["fine-tune-tiny9"]["interactive"] is False
        assert by_id["include-drawings-model3"].get("interactive") is not False
        # The Train button with the box ticked goes through the same refusal (gr.Warning, not a run).
        view = Client(app.url, verbose=False).predict(1, 32, 0.1, 200, "", True, api_name="/train_tiny9")
        assert "**Not started.** Model 9: tiny's trainer does not support include_drawings" in json.dumps(view)
        assert httpx.get(app.url + "train_status/tiny9", timeout=30).json()["running"] is False
