"""Model versions (training/model_versions.py) on disk: shipped = 1, record, serve, prune, restart."""
from __future__ import annotations

import json
import shutil

import pytest

from inference.predictor import Predictor
from tests.app_server import shipped_accuracy
from tests.fakes import write_tiny_model
from training.model_versions import SHIPPED, ModelVersions, VersionError


@pytest.fixture
def exports(empty_exports, exports_copy):
    for path in exports_copy.glob("model1.*"):
        shutil.copy2(path, empty_exports / path.name)
    return empty_exports


def versions_of(exports, keep=5) -> ModelVersions:
    return ModelVersions(exports, keep=keep)


def served_accuracy(exports) -> float:
    return json.loads((exports / "model1.json").read_text())["test_accuracy"]


def test_first_start_keeps_the_shipped_model_as_version_1(exports):
    shipped = (exports / "model1.onnx").read_bytes()
    versions = versions_of(exports)
    versions.ensure_initial()
    versions.ensure_initial()  # idempotent
    [v1] = versions.list("model1")
    assert v1["version"] == 1 and v1["source"] == SHIPPED and v1["serving"] and v1["accuracy"] == shipped_accuracy("model1")
    assert (exports / "versions" / "model1" / "1" / "model1.onnx").read_bytes() == shipped
    assert versions.list("model2") == []  # nothing exported: nothing kept


def test_a_run_becomes_a_version_and_any_version_serves_again(exports):
    versions = versions_of(exports)
    versions.ensure_initial()
    predictor = Predictor(exports)
    shipped_digit = predictor.predict_batch(_images(), "model1")[0].digit
    write_tiny_model(exports, "model1", digit=3, accuracy=0.2)  # what a trainer writes
    assert versions.record("model1") == 2
    assert json.loads((exports / "model1.json").read_text())["version"] == 2
    assert predictor.predict_batch(_images(), "model1")[0].digit == 3  # hot reload by signature
    assert [(v["version"], v["serving"]) for v in versions.list("model1")] == [(2, True), (1, False)]

    served = versions.serve("model1", 1)
    assert served["serving"] and served["version"] == 1
    assert (exports / "model1.onnx").read_bytes() == (exports / "versions/model1/1/model1.onnx").read_bytes()
    assert served_accuracy(exports) == shipped_accuracy("model1")
    assert predictor.predict_batch(_images(), "model1")[0].digit == shipped_digit
    assert predictor.model_status("model1")["version"] == 1

    restarted = versions_of(exports)  # a restart: the choice is the files themselves
    restarted.ensure_initial()
    assert restarted.serving("model1") == 1 and len(restarted.list("model1")) == 2

    with pytest.raises(VersionError, match="no version 7; kept versions: 1, 2"):
        versions.serve("model1", 7)
    with pytest.raises(VersionError, match="Unknown model"):
        versions.list("nope")


def test_pruning_keeps_the_shipped_the_best_and_the_serving(exports):
    versions = versions_of(exports, keep=3)
    versions.ensure_initial()
    accuracies = [0.97, 0.5, 0.6, 0.7, 0.8]  # version 2 is the best (better than the shipped model)
    for index, accuracy in enumerate(accuracies):
        write_tiny_model(exports, "model1", seed=index, accuracy=accuracy)
        versions.record("model1")
    kept = [v["version"] for v in versions.list("model1")]
    assert kept == [6, 2, 1]  # newest (serving), best, shipped
    versions.serve("model1", 1)
    write_tiny_model(exports, "model1", seed=99, accuracy=0.1)
    versions.record("model1")  # now serving 7: 6 is neither shipped, best nor serving
    assert [v["version"] for v in versions.list("model1")] == [7, 2, 1]
    assert not (exports / "versions/model1/6").exists()


def test_a_model_replaced_outside_the_app_is_kept_as_a_version(exports):
    versions = versions_of(exports)
    versions.ensure_initial()
    write_tiny_model(exports, "model1", seed=5, accuracy=0.3)  # e.g. `python -m training model1`
    versions_of(exports).ensure_initial()
    listed = versions.list("model1")
    assert [(v["version"], v["source"], v["serving"]) for v in listed] == [(2, "found in exports", True),
                                                                           (1, SHIPPED, False)]


def test_a_half_written_version_is_never_listed(exports):
    versions = versions_of(exports)
    versions.ensure_initial()
    (exports / "versions/model1/.staging-dead").mkdir()  # a crash mid-copy leaves only this
    (exports / "versions/model1/9").mkdir()  # a folder without version.json
    assert [v["version"] for v in versions.list("model1")] == [1]


def _images():
    import numpy as np

    from inference.preprocess import preprocess
    from tests.segments import segment_digit

    return np.stack([preprocess(segment_digit(4, 0))])


def test_a_failed_copy_leaves_no_half_version_and_does_not_raise_at_start(exports, monkeypatch, caplog):
    import training.model_versions as model_versions

    def disk_full(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(model_versions.shutil, "copy2", disk_full)
    versions = versions_of(exports)
    versions.ensure_initial()  # logged, not raised: the app starts and serves
    assert "cannot keep model1 as a version" in caplog.text
    assert versions.list("model1") == [] and list((exports / "versions" / "model1").iterdir()) == []
    with pytest.raises(OSError):
        versions.record("model1")  # app.py's on_trained logs this; the new model serves anyway
