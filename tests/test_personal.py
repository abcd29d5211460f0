"""Personalised training (training/personal.py) through the real trainers: drawings of a style MNIST
lacks (seven-segment digits, tests/segments.py) move the held-out drawings' accuracy."""
from __future__ import annotations

import importlib.util
import shutil

import numpy as np
import pytest


from drawings.corrections import save_correction
from drawings.store import DrawingStore
from inference.predictor import Predictor
from tests.app_server import shipped_accuracy
from tests.segments import segment_digit
from training.events import Result
from training.jobs import JobManager
from training.model_versions import ModelVersions
from training.options import TrainOptions
from training.personal import PersonalRun, PersonalTrainingError, repeats_for
from training.registry import MODELS

pytestmark = pytest.mark.slow


@pytest.fixture
def exports(empty_exports, exports_copy):
    for path in exports_copy.glob("*"):
        if path.is_file():
            shutil.copy2(path, empty_exports / path.name)
    return empty_exports


@pytest.fixture
def store(tmp_path, monkeypatch, exports) -> DrawingStore:
    """Ten seven-segment drawings per digit, saved as corrections (in shuffled order, like a person)."""
    monkeypatch.setenv("DRAWINGS_DB", str(tmp_path / "drawings.sqlite3"))
    store = DrawingStore.from_environment()
    predictor = Predictor(exports)
    pairs = [(digit, seed) for seed in range(10) for digit in range(10)]
    for index in np.random.default_rng(0).permutation(len(pairs)):
        digit, seed = pairs[index]
        save_correction(store, predictor, segment_digit(digit, seed), digit)
    return store


def run_trainer(name: str, options: dict, data) -> Result:
    events = list(MODELS[name].trainer()(TrainOptions(**{**MODELS[name].quick().to_dict(), **options}), data=data))
    assert isinstance(events[-1], Result)
    return events[-1]


def test_weights_make_a_few_dozen_drawings_count():
    assert repeats_for(55_000, 80, 0.05) * 80 == pytest.approx(0.05 / 0.95 * 55_000, rel=0.03)  # ceil: within one repeat
    assert repeats_for(55_000, 1, 0.05) == 500  # capped: one drawing never swamps a run
    assert repeats_for(1000, 10_000, 0.05) == 1 and repeats_for(1000, 0, 0.05) == 0


def test_options_are_checked(store, mnist):
    with pytest.raises(ValueError, match="set include_drawings too"):
        TrainOptions(fine_tune=True).validate()
    jobs = JobManager(models={"model1": MODELS["model1"]})
    with pytest.raises(ValueError, match="include_drawings"):
        jobs.start("model1", {"fine_tune": True})
    empty = DrawingStore(store.path.with_name("empty.sqlite3"))
    with pytest.raises(PersonalTrainingError, match="no drawings to train on yet"):
        PersonalRun.start("model1", "joblib", TrainOptions(include_drawings=True), mnist, store=empty)


def test_model1_full_run_and_fine_tune_learn_the_drawings(store, mnist, exports):
    plain = run_trainer("model1", {"limit": 5000}, mnist).metadata["personal"]
    assert plain["drawings_trained_on"] == 0 and plain["before"]["drawings"] is not None  # reported anyway

    mixed = run_trainer("model1", {"limit": 5000, "include_drawings": True}, mnist)
    personal = mixed.metadata["personal"]
    assert personal["drawings_trained_on"] + personal["drawings_held_out"] == 100
    assert mixed.metadata["drawings_accuracy"] == personal["after"]["drawings"]
    # Since the mix's writers' conventions (issue 21) a plain run already reads ~90% of these 24 held-out
    # drawings (22 of 24 measured), so the drawings cannot add 10 points any more: they add the rest.
    assert personal["after"]["drawings"] > plain["after"]["drawings"], (plain, personal)
    assert personal["after"]["drawings"] >= 0.95, (plain, personal)

    # Fine-tune from the shipped model: the held-out drawings move, MNIST stays within issue 21's 0.3
    # points (it lost ~0.5 with 4,000 MNIST images beside the drawings: model1_logreg.FINE_TUNE_MNIST).
    # With Model 1's default options, as the app's Fine-tune button runs it (the quick options' limit of
    # 2,000 images would leave only those beside the drawings).
    restore_shipped(exports)
    options = {**MODELS["model1"].defaults().to_dict(), "include_drawings": True, "fine_tune": True}
    tuned = run_trainer("model1", options, mnist).metadata["personal"]
    assert tuned["fine_tune"] and tuned["before"]["mnist_test"] == pytest.approx(shipped_accuracy("model1"))
    assert tuned["after"]["drawings"] > tuned["before"]["drawings"], tuned
    assert tuned["after"]["mnist_test"] >= tuned["before"]["mnist_test"] - 0.003, tuned


def test_fine_tuning_an_older_one_vs_rest_model1_says_to_train_it_in_full(store, mnist, exports):
    """A model1.joblib from before Model 1 became multinomial (SGDClassifier) cannot be continued by
    the softmax trainer: the run stops with a message, and the serving files stay as they were."""
    import joblib
    from sklearn.linear_model import SGDClassifier
    from sklearn.pipeline import Pipeline

    restore_shipped(exports)
    flat = mnist.x_train[:500].reshape(500, -1) / 255.0
    joblib.dump(Pipeline([("logreg", SGDClassifier(loss="log_loss").fit(flat, mnist.y_train[:500]))]),
                exports / "model1.joblib")
    before = {path.name: path.read_bytes() for path in exports.glob("model1.*")}
    with pytest.raises(PersonalTrainingError, match="train it in full once before fine-tuning"):
        run_trainer("model1", {"include_drawings": True, "fine_tune": True}, mnist)
    assert {path.name: path.read_bytes() for path in exports.glob("model1.*")} == before


@pytest.mark.skipif(importlib.util.find_spec("tensorflow") is None, reason="TensorFlow is not installed")
@pytest.mark.parametrize("name", ["model2", "model3"])  # Model 3 fine-tunes through the same Keras loop
def test_keras_fine_tune(store, mnist, exports, name):
    restore_shipped(exports)
    result = run_trainer(name, {"include_drawings": True, "fine_tune": True}, mnist)
    tuned = result.metadata["personal"]
    assert result.metadata["options"]["epochs"] <= 3 and tuned["fine_tune"]
    assert tuned["after"]["drawings"] >= tuned["before"]["drawings"], tuned
    assert tuned["after"]["mnist_test"] >= tuned["before"]["mnist_test"] - 0.005, tuned  # continued, not restarted
    assert Predictor(ModelVersions()).model_status(name)["drawings_accuracy"] == tuned["after"]["drawings"]


def restore_shipped(exports):
    """Serve the shipped models (version 1, in `exports`) again: the runs before were new versions."""
    versions = ModelVersions()
    for name in MODELS:
        if versions.serving(name) not in (None, 1):
            versions.serve(name, 1)
