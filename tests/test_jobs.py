"""Background training jobs, driven by fake registry trainers (plus one real quick Model 1 run)."""
from __future__ import annotations

import sys
import threading
from pathlib import Path

import pytest

from tests.fakes import FakeTrainer, fake_progress, fake_result
from training.jobs import JobAlreadyRunningError, JobManager, TrainingUnavailableError
from training.options import TrainOptions

WAIT = 10  # seconds: generous upper bound for a fake trainer's thread to react


@pytest.fixture(autouse=True)
def downloads_allowed(monkeypatch):
    # The MNIST pre-check passes when downloads are allowed; fake trainers never load data.
    monkeypatch.delenv("MNIST_DOWNLOAD", raising=False)


def result(accuracy=0.9):
    return fake_result("fake", accuracy)


progress = fake_progress


def collect_until_done(jobs: JobManager, name: str) -> list[dict]:
    """What a streaming UI sees: every event once, in order, ending with the terminal one."""
    events, seen = [], 0
    while True:
        new, seen = jobs.wait_for_update(name, seen, timeout=WAIT)
        events.extend(new)
        if events and "state" in events[-1]:
            return events
        assert new, "no event within the timeout"


def test_successful_job_reports_progress_result_and_calls_on_success(monkeypatch):
    fake = FakeTrainer(monkeypatch)

    def script(options):
        for step in range(1, 4):
            yield progress(step)
        yield result(0.93)

    fake.script = script
    successes = []
    jobs = JobManager(on_success=lambda name, res: successes.append((name, res.test_accuracy)),
                      models={"fake": fake.spec})
    started = jobs.start("fake")
    assert started["running"] and started["state"] == "running"
    events = collect_until_done(jobs, "fake")
    assert [e["status"] for e in events] == ["Starting", "Epoch 1/3", "Epoch 2/3", "Epoch 3/3",
                                             "Done: test accuracy 93.00% in 1.5 s"]
    assert events[-1]["state"] == "succeeded" and events[-1]["progress"] == 100
    status = jobs.status("fake")
    assert status["state"] == "succeeded" and not status["running"] and status["error"] is None
    assert status["progress"] == 100 and status["accuracy"] == 0.93
    assert status["result"]["test_accuracy"] == 0.93 and status["options"]["epochs"] == 3
    assert len(status["history"]) == 5
    assert successes == [("fake", 0.93)]
    assert not fake.exited_early.is_set()  # the generator ran to its end


def test_second_start_is_refused_while_running_and_allowed_after(monkeypatch):
    fake = FakeTrainer(monkeypatch)
    gate = threading.Event()

    def script(options):
        yield progress(1)
        gate.wait(WAIT)
        yield result()

    fake.script = script
    jobs = JobManager(models={"fake": fake.spec})
    jobs.start("fake")
    with pytest.raises(JobAlreadyRunningError, match="already training"):
        jobs.start("fake")
    assert jobs.is_running("fake")
    gate.set()
    assert jobs.join("fake", WAIT)
    assert jobs.status("fake")["state"] == "succeeded"
    jobs.start("fake")  # the gate is open now: runs straight through
    assert jobs.join("fake", WAIT) and jobs.status("fake")["state"] == "succeeded"


def test_different_models_train_side_by_side(monkeypatch):
    first, second = FakeTrainer(monkeypatch, "one"), FakeTrainer(monkeypatch, "two")
    gate = threading.Event()

    def script(options):
        gate.wait(WAIT)
        yield result()

    first.script = second.script = script
    jobs = JobManager(models={"one": first.spec, "two": second.spec})
    jobs.start("one")
    jobs.start("two")
    assert jobs.is_running("one") and jobs.is_running("two")
    gate.set()
    assert jobs.join("one", WAIT) and jobs.join("two", WAIT)


def test_cancel_stops_the_trainer_before_it_writes(monkeypatch):
    fake = FakeTrainer(monkeypatch)
    proceed = threading.Event()

    def script(options):
        yield progress(1)
        proceed.wait(WAIT)
        yield progress(2)
        fake.wrote_files.set()  # a real trainer writes its files only here, at the very end
        yield result()

    fake.script = script
    successes = []
    jobs = JobManager(on_success=lambda *args: successes.append(args), models={"fake": fake.spec})
    assert jobs.cancel("fake") is False  # nothing to cancel yet
    jobs.start("fake")
    seen = 0
    while jobs.status("fake")["progress"] < 33:
        _, seen = jobs.wait_for_update("fake", seen, timeout=WAIT)
    assert jobs.cancel("fake") is True
    proceed.set()
    assert jobs.join("fake", WAIT)
    status = jobs.status("fake")
    assert status["state"] == "cancelled" and not status["running"] and status["error"] is None
    assert "Cancelled" in status["status"] and status["history"][-1]["state"] == "cancelled"
    assert fake.exited_early.is_set() and not fake.wrote_files.is_set()
    assert successes == []


def test_trainer_error_becomes_a_clear_status(monkeypatch):
    fake = FakeTrainer(monkeypatch)

    def script(options):
        yield progress(1)
        raise OSError("No space left on device")

    fake.script = script
    jobs = JobManager(models={"fake": fake.spec})
    jobs.start("fake")
    events = collect_until_done(jobs, "fake")
    status = jobs.status("fake")
    assert status["state"] == "failed" and not status["running"]
    assert status["error"] == "OSError: No space left on device"
    assert events[-1]["error"] == status["error"]
    # The failure does not block the next run.
    fake.script = lambda options: iter([result()])
    jobs.start("fake")
    assert jobs.join("fake", WAIT) and jobs.status("fake")["state"] == "succeeded"


def test_trainer_without_result_and_failing_on_success_are_failures(monkeypatch):
    fake = FakeTrainer(monkeypatch)
    fake.script = lambda options: iter([progress(1)])
    jobs = JobManager(models={"fake": fake.spec})
    jobs.start("fake")
    assert jobs.join("fake", WAIT)
    assert jobs.status("fake")["error"] == "the trainer ended without a result"

    def broken_reload(name, res):
        raise RuntimeError("exports/fake.onnx is not a valid ONNX model")

    fake.script = lambda options: iter([result()])
    jobs = JobManager(on_success=broken_reload, models={"fake": fake.spec})
    jobs.start("fake")
    assert jobs.join("fake", WAIT)
    status = jobs.status("fake")
    assert status["state"] == "failed" and "loading the new model failed" in status["error"]
    assert "not a valid ONNX model" in status["error"]


def test_wait_for_update_times_out_empty_and_history_is_bounded(monkeypatch):
    fake = FakeTrainer(monkeypatch)
    gate = threading.Event()

    def script(options):
        for step in range(1, 21):
            yield progress(step, 20)
        gate.wait(WAIT)
        yield result()

    fake.script = script
    jobs = JobManager(models={"fake": fake.spec}, history_limit=5)
    assert jobs.wait_for_update("fake", 0, timeout=5) == ([], 0)  # never started: returns at once
    jobs.start("fake")
    seen = 0
    while seen < 21:  # "Starting" + 20 progress events
        _, seen = jobs.wait_for_update("fake", seen, timeout=WAIT)
    assert jobs.wait_for_update("fake", seen, timeout=0.05) == ([], seen)  # running, nothing new
    events, seen_all = jobs.wait_for_update("fake", 0, timeout=WAIT)
    assert [e["status"] for e in events] == [f"Epoch {n}/20" for n in range(16, 21)]  # only the kept 5
    assert seen_all == 21
    assert len(jobs.status("fake")["history"]) == 5 and len(jobs.status("fake", history=2)["history"]) == 2
    gate.set()
    assert jobs.join("fake", WAIT)


def test_options_are_validated_and_passed_to_the_trainer(monkeypatch):
    fake = FakeTrainer(monkeypatch)
    fake.script = lambda options: iter([result()])
    jobs = JobManager(models={"fake": fake.spec})
    with pytest.raises(ValueError, match="unknown option.*epoch_count"):
        jobs.start("fake", {"epoch_count": 3})
    with pytest.raises(ValueError, match="epochs"):
        jobs.start("fake", {"epochs": "many"})
    with pytest.raises(ValueError, match="epochs must be between 1 and 100"):
        jobs.start("fake", {"epochs": 0})
    with pytest.raises(ValueError, match="preset"):
        jobs.start("fake", {"preset": "huge"})
    with pytest.raises(ValueError, match="JSON object"):
        jobs.start("fake", ["epochs", 2])
    with pytest.raises(KeyError, match="unknown model"):
        jobs.start("nope")
    assert fake.received_options == []  # nothing started

    jobs.start("fake", {"epochs": 2, "learning_rate": 0.01})
    assert jobs.join("fake", WAIT)
    jobs.start("fake", {"preset": "quick", "seed": 7})
    assert jobs.join("fake", WAIT)
    jobs.start("fake", {"preset": "quick", "limit": None})
    assert jobs.join("fake", WAIT)
    assert fake.received_options == [
        TrainOptions(epochs=2, learning_rate=0.01),
        TrainOptions(epochs=1, limit=1000, seed=7),
        TrainOptions(epochs=1, limit=None),
    ]


def test_training_unavailable_is_refused_with_the_reason(monkeypatch, tmp_path):
    fake = FakeTrainer(monkeypatch, requires=("surely_not_an_installed_package",))
    jobs = JobManager(models={"fake": fake.spec})
    with pytest.raises(TrainingUnavailableError, match="surely_not_an_installed_package is not installed"):
        jobs.start("fake")

    broken = FakeTrainer(monkeypatch, "broken")
    monkeypatch.delitem(sys.modules, broken.module_name)  # as if its module file were missing
    with pytest.raises(TrainingUnavailableError, match="Fake broken cannot be trained here.*failed to import"):
        JobManager(models={"broken": broken.spec}).start("broken")

    usable = FakeTrainer(monkeypatch, "usable")
    usable.script = lambda options: iter([result()])
    monkeypatch.setenv("MNIST_DIR", str(tmp_path))  # an empty folder
    monkeypatch.setenv("MNIST_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("MNIST_DOWNLOAD", "0")
    jobs = JobManager(models={"usable": usable.spec})
    with pytest.raises(TrainingUnavailableError, match="MNIST was not found.*MNIST_DIR"):
        jobs.start("usable")
    assert usable.received_options == []


@pytest.mark.slow
def test_real_quick_model1_job_is_served_at_once(mnist_dir, empty_exports, monkeypatch):
    pytest.importorskip("training.model1_logreg", reason="training/model1_logreg.py not written yet")
    from inference.predictor import Predictor

    monkeypatch.setenv("MNIST_DIR", str(mnist_dir))
    predictor = Predictor(empty_exports)
    assert not predictor.model_status("model1")["available"]
    jobs = JobManager(on_success=lambda name, res: predictor.reload(name), exports_dir=str(empty_exports))
    jobs.start("model1", {"preset": "quick"})
    events = collect_until_done(jobs, "model1")
    status = jobs.status("model1")
    assert status["state"] == "succeeded", status["error"]
    assert len(events) >= 3 and events[-1]["progress"] == 100
    served = predictor.model_status("model1")
    assert served["available"] and served["accuracy"] == pytest.approx(status["accuracy"], abs=1e-5)
    assert Path(status["result"]["paths"]["onnx"]).parent == empty_exports
