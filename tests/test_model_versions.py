"""Model versions (training/model_versions.py): the shipped exports are version 1 and never written;
runs become versions in the data location; serving, pruning, restarts, damage, and the race of
issue 18 item 6 (serving a version while a run finishes)."""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import threading

import numpy as np
import pytest

from inference.predictor import Predictor
from tests.app_server import shipped_accuracy
from tests.fakes import write_tiny_model
from training.model_versions import SHIPPED, ModelVersions, VersionError


@pytest.fixture
def exports(model1_exports):
    return model1_exports  # tests/conftest.py: Model 1 alone in the shipped folder


@pytest.fixture
def data(tmp_path):
    return tmp_path / "data"


def versions_of(exports, data, keep=5) -> ModelVersions:
    return ModelVersions(data_dir=data, shipped_dir=exports, keep=keep)


def snapshot(folder) -> dict[str, tuple[bytes, int]]:
    """Every file of a folder with its modification time: proves a folder was not written."""
    return {path.name: (path.read_bytes(), path.stat().st_mtime_ns) for path in sorted(folder.iterdir())}


def sha256(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def images():
    from inference.preprocess import preprocess
    from tests.segments import segment_digit

    return np.stack([preprocess(segment_digit(4, 0))])


def test_the_shipped_models_are_version_1_and_nothing_is_written_to_read_them(exports, data):
    before = snapshot(exports)
    versions = versions_of(exports, data)
    [v1] = versions.list("model1")
    assert v1["version"] == 1 and v1["source"] == SHIPPED and v1["serving"]
    assert v1["accuracy"] == shipped_accuracy("model1") and v1["onnx_sha256"] == sha256(exports / "model1.onnx")
    assert versions.serving_files("model1").paths["onnx"] == exports / "model1.onnx"
    assert versions.list("model2") == [] and versions.serving("model2") is None  # nothing shipped: nothing serves
    predictor = Predictor(versions)
    assert predictor.model_status("model1")["version"] == 1
    assert not data.exists() and snapshot(exports) == before  # reading wrote nothing anywhere


def test_a_run_becomes_a_version_that_serves_and_any_version_serves_again(exports, data):
    before = snapshot(exports)
    versions = versions_of(exports, data)
    predictor = Predictor(versions)
    shipped_digit = predictor.predict_batch(images(), "model1")[0].digit
    paths = write_tiny_model(versions, "model1", digit=3, accuracy=0.2)  # what a trainer writes
    version_2 = data / "versions" / "model1" / "2"
    assert paths["onnx"] == str(version_2 / "model1.onnx")
    recorded = json.loads((version_2 / "version.json").read_text())
    metadata = json.loads((version_2 / "model1.json").read_text())
    assert recorded["files"]["onnx"]["sha256"] == recorded["onnx_sha256"] == metadata["onnx_sha256"] == sha256(version_2 / "model1.onnx")
    assert metadata["version"] == 2 and recorded["accuracy"] == 0.2
    assert predictor.predict_batch(images(), "model1")[0].digit == 3  # hot reload: the new version serves
    assert predictor.model_status("model1")["version"] == 2
    assert [(v["version"], v["serving"]) for v in versions.list("model1")] == [(2, True), (1, False)]

    served = versions.serve("model1", 1)
    assert served["serving"] and served["version"] == 1
    assert predictor.predict_batch(images(), "model1")[0].digit == shipped_digit
    assert predictor.model_status("model1")["version"] == 1
    assert predictor.model_status("model1")["accuracy"] == shipped_accuracy("model1")

    restarted = versions_of(exports, data)  # a restart: the choice is kept in the data location
    assert restarted.serving("model1") == 1 and len(restarted.list("model1")) == 2
    assert snapshot(exports) == before  # version 1 was never written

    with pytest.raises(VersionError, match="no version 7; kept versions: 1, 2"):
        versions.serve("model1", 7)
    with pytest.raises(VersionError, match="Unknown model"):
        versions.list("nope")


def test_a_version_kept_by_another_process_serves_at_the_next_request(exports, data):
    """`python -m training model1` while the app runs: the CLI's ModelVersions writes, the app's
    predictor (another process here) serves the new version at its next request."""
    predictor = Predictor(versions_of(exports, data))
    assert predictor.model_status("model1")["version"] == 1
    code = ("import sys; from pathlib import Path; from tests.fakes import write_tiny_model; "
            "from training.model_versions import ModelVersions; "
            "write_tiny_model(ModelVersions(data_dir=Path(sys.argv[1]), shipped_dir=Path(sys.argv[2])), 'model1', digit=6)")
    subprocess.run([sys.executable, "-c", code, str(data), str(exports)], check=True, timeout=120,
                   cwd=os.path.dirname(os.path.dirname(__file__)))
    assert predictor.model_status("model1")["version"] == 2
    assert predictor.predict_batch(images(), "model1")[0].digit == 6


def test_pruning_keeps_the_shipped_the_newest_the_best_and_the_serving(exports, data):
    versions = versions_of(exports, data, keep=3)
    accuracies = [0.97, 0.5, 0.6, 0.7, 0.8]  # version 2 is the best (better than the shipped model)
    for index, accuracy in enumerate(accuracies):
        write_tiny_model(versions, "model1", seed=index, accuracy=accuracy)
    assert [v["version"] for v in versions.list("model1")] == [6, 2, 1]  # newest (serving), best, shipped
    versions.serve("model1", 1)
    write_tiny_model(versions, "model1", seed=99, accuracy=0.1)  # now serving 7: 6 is none of those
    assert [v["version"] for v in versions.list("model1")] == [7, 2, 1]
    assert not (data / "versions/model1/6").exists()
    versions.serve("model1", 2)
    write_tiny_model(versions, "model1", seed=98, accuracy=0.1)
    assert [v["version"] for v in versions.list("model1")] == [8, 2, 1]  # numbers are never reused


def test_a_half_written_run_is_never_listed_and_is_removed_once_its_process_is_gone(exports, data):
    versions = versions_of(exports, data)
    folder = data / "versions" / "model1"
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                          text=True, check=True).stdout.strip()
    (folder / f".run-{dead}-0badf00d").mkdir(parents=True)  # a run killed mid-write leaves this
    (folder / f".run-{os.getpid()}-0000beef").mkdir()  # a run still writing (this process)
    (folder / "9").mkdir()  # a folder without version.json
    assert [v["version"] for v in versions.list("model1")] == [1]
    assert [path.name for path in versions.remove_abandoned_runs()] == [f".run-{dead}-0badf00d"]
    assert (folder / f".run-{os.getpid()}-0000beef").is_dir()


def test_a_failed_or_cancelled_run_keeps_nothing_and_serving_stays(exports, data):
    versions = versions_of(exports, data)
    with pytest.raises(OSError):
        with versions.writer("model1") as run:
            run.stage_bytes("onnx", b"half")
            raise OSError(28, "No space left on device")
    assert [v["version"] for v in versions.list("model1")] == [1]
    assert [entry.name for entry in (data / "versions" / "model1").iterdir() if not entry.name.startswith(".lock")] == []


def test_a_damaged_version_refuses_to_serve_and_a_missing_one_falls_back_to_the_shipped(exports, data, caplog):
    versions = versions_of(exports, data)
    write_tiny_model(versions, "model1", digit=3)
    write_tiny_model(versions, "model1", digit=5)
    (data / "versions/model1/2/model1.onnx").write_bytes(b"not the run's file")
    with pytest.raises(VersionError, match="version 2 of model1 is damaged"):
        versions.serve("model1", 2)
    assert versions.serving("model1") == 3
    shutil.rmtree(data / "versions/model1/3")  # removed by hand while serving
    predictor = Predictor(versions)
    assert predictor.model_status("model1")["version"] == 1 and predictor.is_available("model1")
    assert "names version 3, which is missing" in caplog.text


def test_serving_a_version_while_runs_finish_never_loses_a_run(exports, data):
    """Issue 18 item 6, in one process: a thread serves version 1 again and again while runs commit.
    Each run's version holds exactly the ONNX file it wrote (before: a byte copy of version 1)."""
    versions = versions_of(exports, data, keep=50)
    shipped_sha = sha256(exports / "model1.onnx")
    stop = threading.Event()
    served = []

    def serve_version_1():
        while not stop.is_set():
            served.append(versions.serve("model1", 1)["version"])

    server = threading.Thread(target=serve_version_1)
    server.start()
    try:
        written = {}
        for seed in range(8):
            paths = write_tiny_model(versions, "model1", seed=seed)
            metadata = json.loads(open(paths["metadata"]).read())
            written[metadata["version"]] = metadata["onnx_sha256"]
    finally:
        stop.set()
        server.join()
    assert len(served) > 8 and sorted(written) == list(range(2, 10))
    for number, sha in written.items():
        kept = data / "versions" / "model1" / str(number) / "model1.onnx"
        assert sha256(kept) == sha != shipped_sha
        assert versions.describe("model1", number)["onnx_sha256"] == sha
    assert len(set(written.values())) == 8


@pytest.mark.slow
def test_serving_version_1_in_a_loop_while_a_live_training_finishes_keeps_the_trained_model(
        tmp_path, exports_copy, mnist_dir):
    """Issue 18 item 6 against `python app.py`: POST .../versions/1/serve again and again while a quick
    Model 1 training runs and finishes. Before: the new "version" was a byte copy of version 1 (3 of 3
    trials). Now its ONNX file is the one the run wrote (the SHA-256 in the job's result), on disk and
    in the listing, and it differs from version 1's."""
    import time

    import httpx

    from tests.app_server import copy_exports, running_app

    exports = copy_exports(exports_copy, tmp_path / "exports")
    data = tmp_path / "data"
    with running_app(exports, tmp_path / "app.log", DATA_DIR=str(data), MNIST_DIR=str(mnist_dir),
                     PREDICT_WORKERS="0") as app, httpx.Client(base_url=app.url, timeout=60) as http:
        shipped_sha = sha256(exports / "model1.onnx")
        assert http.post("/train/model1", json={"preset": "quick"}).status_code == 202
        served, answers = 0, set()
        deadline = time.monotonic() + 600
        while (status := http.get("/train_status/model1").json())["running"]:
            assert time.monotonic() < deadline, "the quick training did not finish in 600 s"
            answer = http.post("/models/model1/versions/1/serve")
            answers.add(answer.status_code)
            served += answer.status_code == 200
        for _ in range(20):  # and on, right after the run committed
            served += http.post("/models/model1/versions/1/serve").status_code == 200
        assert status["state"] == "succeeded", status
        assert answers == {200} and served > 20
        wrote = status["result"]["metadata"]["onnx_sha256"]
        number = status["result"]["metadata"]["version"]
        listed = {entry["version"]: entry for entry in http.get("/models/model1/versions").json()}
        assert sorted(listed) == [1, number] and number == 2
        assert listed[number]["onnx_sha256"] == wrote != listed[1]["onnx_sha256"] == shipped_sha
        assert sha256(data / "versions" / "model1" / str(number) / "model1.onnx") == wrote
        assert listed[1]["serving"] and http.get("/model_status").json()["model1"]["version"] == 1
        assert http.post(f"/models/model1/versions/{number}/serve").status_code == 200
        trained = http.get("/model_status").json()["model1"]
        assert trained["version"] == number and trained["accuracy"] == pytest.approx(status["accuracy"], abs=1e-6)
    assert sha256(exports / "model1.onnx") == shipped_sha  # version 1 was never written
