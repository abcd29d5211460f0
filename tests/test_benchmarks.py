"""The benchmark harness: the load generator and server handling on their own, then a whole
`python -m benchmarks --quick` run checked for files and sane numbers in every section.

Timing targets are not asserted here (they live in the benchmark's own report); these
tests assert that the harness measures, counts errors, stops its servers and reports.
"""
from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from benchmarks.speed.load import run_load, summarize
from benchmarks.speed.servers import ServerProcess, free_port, request, server_env
from tests.app_server import ROOT, git_status
SECTIONS = ("accuracy", "robustness", "drawn", "inference", "rest", "browser", "training", "cold_start", "explain",
            "replicas")
PLOTS = ("robustness.png", "robustness_examples.png", "inference_speed.png", "rest_load.png",
         "training_curves.png")

# A tiny HTTP server: /predict answers 200 with a prediction, except every third request,
# which gets a 500; it forks a child so stopping must take the whole process group.
TINY_SERVER = textwrap.dedent("""
    import itertools, subprocess, sys
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
    counter = itertools.count(1)
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        def do_POST(self):
            self.rfile.read(int(self.headers["Content-Length"]))
            ok = next(counter) % 3 != 0
            body = b'{"prediction": 7}' if ok else b'{"error": "boom"}'
            self.send_response(200 if ok else 500)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        def log_message(self, *args):
            pass
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    print("child", child.pid, flush=True)
    ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), Handler).serve_forever()
""")


def _listening(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


def _alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat[stat.rindex(")") + 2] != "Z"  # a zombie has already exited


def test_load_generator_counts_errors_and_stops_its_server(tmp_path):
    port = free_port()
    script = tmp_path / "tiny_server.py"
    script.write_text(TINY_SERVER)
    server = ServerProcess("tiny", [sys.executable, str(script), str(port)], port, env=server_env(),
                           log_path=tmp_path / "tiny.log")
    with server:
        server.wait_until(lambda: _listening(port), timeout=30)
        run = run_load(port, "/predict", b"{}", clients=4, max_requests=90, max_seconds=20)
        assert run.ok + run.errors == 90  # the request budget is shared, not per client
        assert run.errors == 30 and run.ok == 60  # every third answer is a 500
        assert "HTTP 500" in run.error_samples[0]
        assert all(latency > 0 for latency in run.latencies_ms)
        summary = summarize([run])
        assert summary["errors"] == 30 and summary["ok"] == 60
        assert 0 < summary["p50_ms"] <= summary["p95_ms"] <= summary["p99_ms"] <= summary["max_ms"]
        assert summary["throughput_rps"] > 0
        assert server.rss_bytes() > 0  # the server and its child, read from /proc

        # The wall-time cap ends a run whose request budget is far away.
        began = time.perf_counter()
        capped = run_load(port, "/predict", b"{}", clients=2, max_requests=10 ** 9, max_seconds=0.5)
        assert time.perf_counter() - began < 5 and capped.ok > 0
        child_pid = int(server.log_path.read_text().split()[1])
    assert server.process.poll() is not None
    assert not _listening(port)
    deadline = time.time() + 5
    while _alive(child_pid) and time.time() < deadline:
        time.sleep(0.05)
    assert not _alive(child_pid), "stopping the server must stop its whole process group"


def test_request_reports_a_server_that_is_not_there():
    with pytest.raises(OSError):
        request(free_port(), "GET", "/env", timeout=2)


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory, mnist_dir, shipped_models_available):
    if not shipped_models_available:
        pytest.skip("exports/ has no shipped models to benchmark (train them: python -m training model1 / model2)")
    out = tmp_path_factory.mktemp("benchmarks")
    began = time.perf_counter()
    completed = subprocess.run([sys.executable, "-m", "benchmarks", "--quick", "--out", str(out)], cwd=ROOT,
                               env={**os.environ, "MNIST_DIR": str(mnist_dir)}, capture_output=True, text=True,
                               timeout=600)
    seconds = time.perf_counter() - began
    assert completed.returncode == 0, f"benchmark failed ({seconds:.0f} s):\n{completed.stderr[-4000:]}"
    return out, json.loads((out / "results.json").read_text())


@pytest.mark.slow
@pytest.mark.tensorflow  # Keras timings, the Flask + Keras baseline, Model 2's training
def test_quick_run_writes_every_file(quick_run):
    out, results = quick_run
    for name in ("results.md", "results.json", *PLOTS):
        assert (out / name).is_file() and (out / name).stat().st_size > 0, name
    markdown = (out / "results.md").read_text()
    assert "`python -m benchmarks --quick --out" in markdown
    assert results["machine"]["cpu"] in markdown and f"| Cores | {results['machine']['cores']} |" in markdown
    assert "Quick run" in markdown
    for plot in PLOTS:
        assert f"]({plot})" in markdown


@pytest.mark.slow
@pytest.mark.tensorflow  # Keras timings, the Flask + Keras baseline, Model 2's training
def test_quick_run_has_every_section_with_checks(quick_run):
    _, results = quick_run
    assert results["quick"] is True
    assert tuple(results["sections"]) == SECTIONS
    for name, section in results["sections"].items():
        assert section["error"] is None, f"{name}: {section['error']}"
        assert 0.0 <= section["other_cpu_share"] <= 1.0, name
        assert section["checks"], name
        for check in section["checks"]:
            assert check["status"] in ("PASS", "MISS", "info"), check
        for table in section["tables"]:
            assert table["columns"][-2:] == ["Target", "Status"], table["title"]
            for row in table["rows"]:
                assert row[-1] in ("PASS", "MISS", "info"), row


@pytest.mark.slow
@pytest.mark.tensorflow  # Keras timings, the Flask + Keras baseline, Model 2's training
def test_quick_run_numbers_are_sane(quick_run):
    _, results = quick_run
    sections = results["sections"]

    for model in ("model1", "model2"):
        assert 0.5 < sections["accuracy"]["data"][model]["accuracy"] <= 1.0

    drawn = sections["drawn"]["data"]
    for model in ("model1", "model2"):
        assert 0.3 < drawn[model]["drawn_digits"]["accuracy"] <= 1.0
        assert 0.0 <= drawn[model]["drawn_digits"]["ece_after"] <= 1.0
        for name in ("letters_symbols", "handwritten_letters", "scribbles", "lines", "two_digits"):
            rates = drawn[model]["sets"][name]
            assert abs(rates["digit"] + rates["unsure"] + rates["not_a_digit"] - 1.0) < 1e-6
    # Model 1's verdicts are measured as served, with Model 3's second opinion: never less doubtful than alone.
    assert drawn["model1"]["second_opinion"] == "model3" and drawn["model2"]["second_opinion"] is None
    for name in ("letters_symbols", "scribbles"):
        assert drawn["model1"]["sets"][name]["flagged"] >= drawn["model1"]["own_verdict_flagged"][name]

    robustness = sections["robustness"]["data"]
    assert 0.5 < robustness["plain"]["model2"] <= 1.0
    for variant, score in robustness["variants"].items():
        assert 0.5 < score["ours"]["model2"] <= 1.0, variant
        assert 0.0 <= score["naive"]["model2"] <= 1.0, variant

    timings = sections["inference"]["data"]["timings"]
    assert set(timings["model2"]) == {"onnxruntime", "Keras model.predict", "Keras model(x)"}
    assert set(timings["model1"]) == {"onnxruntime", "sklearn predict_proba"}
    for engines in timings.values():
        for by_batch in engines.values():
            assert set(by_batch) == {"b1", "b64"}
            for timing in by_batch.values():
                assert 0 < timing["per_image_s"] < 1.0
    # Keras model.predict carries milliseconds of per-call overhead: onnxruntime beats it on any machine.
    assert sections["inference"]["data"]["native_over_onnx"]["model2/Keras model.predict/b1"] > 1

    rest = sections["rest"]["data"]
    assert rest["ours"]["answer_correct"]  # (the original way's naive preprocessing may well misread it)
    for server in ("ours", "baseline"):
        assert rest[server]["rss_idle_mib"] > 0
        for clients in ("1", "8", "32"):
            level = rest[server]["levels"][clients]
            assert level["errors"] == 0, (server, clients, level["error_samples"])
            assert level["ok"] > 0 and level["throughput_rps"] > 0
            assert 0 < level["p50_ms"] <= level["p95_ms"] <= level["p99_ms"]
    every = rest["ours"]["all_models"]  # "model": "all" (issue 21): every registered model answers, at 1 and 8 clients
    from training.registry import MODELS

    assert every["models"] == sorted(MODELS)
    for clients in ("1", "8"):
        level = every["levels"][clients]
        assert level["errors"] == 0 and level["ok"] > 0, (clients, level["error_samples"])
        assert 0 < level["p50_ms"] <= level["p99_ms"]
    training_load = rest["ours"]["during_training"]
    assert training_load["train_http_status"] == 202
    assert training_load["errors"] == 0 and training_load["ok"] > 0
    assert training_load["job_finished"] and not training_load["job_error"]
    assert training_load["predict_after_training_ok"] and training_load["new_model_served"]

    browser = sections["browser"]["data"]
    drawing = browser["drawing"]
    assert drawing["predictions"] > 0 and drawing["server_cpu_seconds"] > 0
    for digit in drawing["digits"]:
        assert digit["strokes"] > 0 and all(ms is not None and ms > 0 for ms in digit["pen_up_to_answers_ms"])
        assert digit["upload_posts"] == 0 and digit["predict_posts"] > 0
    assert 0 < browser["replay"]["server_cpu_ms_per_prediction"] < 1000
    assert browser["replay"]["request_bytes"] < 64 * 1024
    for kind in ("page", "rest"):
        level = browser["load"][kind]
        assert level["ok"] > 0 and level["errors"] == 0, (kind, level["error_samples"])
        assert 0 < level["p50_ms"] <= level["p95_ms"]

    for model in ("model1", "model2"):
        record = sections["training"]["data"][model]
        assert 0.0 < record["test_accuracy"] <= 1.0
        assert 0 < record["train_seconds"] <= record["wall_seconds"]
        # Preparing the data is reported apart from the training time (the canvas mix drawn or cached).
        assert record["data_source"] in ("drawn", "cache")
        assert 0 < record["data_seconds"] and record["train_seconds"] + record["data_seconds"] <= record["wall_seconds"]
        # ... and so is the evaluation (test set, calibration, drawn sets) that a first run's wall time also holds.
        assert 0 < record["evaluate_seconds"]
        assert record["train_seconds"] + record["data_seconds"] + record["evaluate_seconds"] <= record["wall_seconds"]
        assert record["epochs"] and all(0.0 <= e["val_accuracy"] <= 1.0 for e in record["epochs"])

    cold = sections["cold_start"]["data"]
    assert 0 < cold["median_s"] < 90
    assert 0 < cold["rss_idle_mib"] <= cold["rss_under_load_mib"]
    assert cold["load_errors"] == 0
    assert cold["tensorflow_loaded"] is False

    explain = sections["explain"]["data"]
    for model in ("model1", "model2"):
        faithfulness = explain["faithfulness"][model]
        for set_name, areas in faithfulness["deletion"][faithfulness["default"]].items():
            assert all(0.0 <= areas[order] <= 1.0 for order in ("map", "random", "reverse", "ink")), set_name
            assert len(areas["curves"]["map"]) == 99
        assert -1.0 <= faithfulness["sanity"][faithfulness["default"]]["median"] <= 1.0
    assert explain["exact"]["model1"]["max_abs_error"] <= 1e-4  # exact whatever the machine's load

    replicas = sections["replicas"]["data"]
    assert [entry["replicas"] for entry in replicas["throughput"]] == [1, 2]  # the quick run's counts
    assert all(entry["rps"] > 0 and entry["errors"] == 0 for entry in replicas["throughput"])
    assert set(replicas["writes"]) == {"SQLite", "PostgreSQL"}
    for entry in replicas["writes"].values():
        assert entry["acknowledged"] > 0 and entry["lost"] == 0 and entry["stored"] == entry["acknowledged"]
    assert 0 < explain["replay"]["plain"]["server_cpu_ms"] < explain["replay"]["explained"]["server_cpu_ms"]
    for label in ("closed", "open"):
        assert all(ms is not None and ms > 0 for ms in explain["page"][label]["answers"]), label
    assert all(ms is not None and ms > 0 for ms in explain["page"]["open"]["maps"])


@pytest.mark.slow
@pytest.mark.tensorflow  # Keras timings, the Flask + Keras baseline, Model 2's training
def test_only_reruns_one_section_and_keeps_the_others(quick_run, mnist_dir):
    out, before = quick_run
    completed = subprocess.run([sys.executable, "-m", "benchmarks", "--quick", "--only", "accuracy", "--out",
                                str(out)], cwd=ROOT, env={**os.environ, "MNIST_DIR": str(mnist_dir)},
                               capture_output=True, text=True, timeout=300)
    assert completed.returncode == 0, completed.stderr[-3000:]
    after = json.loads((out / "results.json").read_text())
    assert tuple(after["sections"]) == SECTIONS
    assert "--only accuracy" in after["sections"]["accuracy"]["command"]
    assert after["sections"]["rest"] == before["sections"]["rest"]
    assert "--only accuracy" in (out / "results.md").read_text()


@pytest.mark.slow
def test_quick_run_without_out_leaves_the_tree_clean(mnist_dir, shipped_models_available):
    """A quick run's miniature figures must not overwrite the committed benchmarks/results.* or plots."""
    if not shipped_models_available:
        pytest.skip("exports/ has no shipped models to benchmark")
    before = git_status()
    if before is None:
        pytest.skip("not a git checkout: cannot compare `git status` before and after")
    committed = {path.name: path.read_bytes() for path in (ROOT / "benchmarks").glob("results.*")}
    completed = subprocess.run([sys.executable, "-m", "benchmarks", "--quick", "--only", "accuracy"], cwd=ROOT,
                               env={**os.environ, "MNIST_DIR": str(mnist_dir)}, capture_output=True, text=True,
                               timeout=300)
    assert completed.returncode == 0, completed.stderr[-3000:]
    wrote = [line for line in completed.stderr.splitlines() if "] wrote " in line]
    assert wrote, completed.stderr[-2000:]
    out = Path(wrote[-1].split("] wrote ", 1)[1].split(" and ")[0]).parent
    try:
        assert ROOT not in out.parents, f"the quick run wrote into the checkout: {out}"
        assert json.loads((out / "results.json").read_text())["quick"] is True
        assert git_status() == before
        assert {path.name: path.read_bytes() for path in (ROOT / "benchmarks").glob("results.*")} == committed
    finally:
        if out.name.startswith("digit-studio-benchmarks-quick-"):
            shutil.rmtree(out, ignore_errors=True)


def test_ceiling_splits_every_drawn_set_in_two_and_its_oracle_learns_from_the_first_half(mnist):
    """benchmarks/reading/ceiling.py (the upper bound quoted in the README): disjoint halves covering each
    digit set, and Model 1's oracles measured on the second halves beside the shipped model."""
    from benchmarks.reading import ceiling
    from benchmarks.reading.drawn_sets import QUICK_SIZE, load_drawn_sets

    sets = load_drawn_sets(mnist, QUICK_SIZE)
    split = ceiling.halves(sets)
    assert set(split) == {name for name, drawn in sets.items() if drawn.is_digits}
    for name, (first, second) in split.items():
        assert not set(first) & set(second) and len(first) + len(second) == len(sets[name].y)
    assert ceiling.halves(sets)["sklearn_digits"][0].tolist() == split["sklearn_digits"][0].tolist()  # seeded
    rows = ceiling.measure_model1(mnist, sets, split, limit=3000)
    assert [row["trained_on"] for row in rows][0].startswith("shipped")
    held_out = sum(len(second) for _, second in split.values())
    for row in rows:
        assert row["images"] == held_out and 0.5 < row["pooled"] <= 1 and 0.8 < row["mnist_test"] <= 1
    # Weighting the sets' first halves ten times moves the fit towards them: the drawn sets' writers
    # and fonts are learnable, which is what makes the oracle an upper bound.
    assert rows[-1]["pooled"] > rows[1]["pooled"]


@pytest.mark.parametrize("shares", ["0", "0.5,2", "half"])
def test_flag_budget_refuses_shares_outside_the_budget(shares, capsys):
    from benchmarks.reading import flag_budget

    with pytest.raises(SystemExit) as stopped:
        flag_budget.main(["--shares", shares])
    assert stopped.value.code == 2 and "share" in capsys.readouterr().err


@pytest.mark.parametrize("arguments, words", [
    (["--model", "model9"], "--model must be one of"),
    (["--model", "model3", "--drawn-budgets", "0.5"], "--drawn-budgets"),
    (["--model", "model3", "--drawn-budgets", "most"], "--drawn-budgets takes numbers"),
])
def test_flag_budget_refuses_a_model_or_drawn_budget_it_cannot_measure(arguments, words, capsys):
    from benchmarks.reading import flag_budget

    with pytest.raises(SystemExit) as stopped:
        flag_budget.main(arguments)
    assert stopped.value.code == 2 and words in capsys.readouterr().err


def test_the_salvage_benchmark_keeps_all_but_the_torn_pages_rows(capsys):
    from benchmarks.speed import salvage

    assert salvage.main(["--drawings", "300", "--png-bytes", "500", "--torn", "1"]) == 0
    row = json.loads(capsys.readouterr().out)
    assert row["drawings"] == 300 and row["torn_pages"] == 1 and 250 <= row["kept"] < 300
