"""Model versions across live replicas on a real PostgreSQL (issue 20, item 3): three `python app.py`,
each with a DATA_DIR of its own (no shared disk), on one database (the session's server).

- a version kept by another process (as `python -m training` would) serves on all three, and each
  replica's copy of its files has the SHA-256 the writer recorded;
- serving a version on one replica makes the two others serve it (their /predict answers change),
  one replica in turn, while 3 clients post /predict to all three: not one of those fails;
- a Model 1 trained on A (REST /train, the quick preset) is a new version that B and C serve without
  a restart, with the same files;
- while PostgreSQL is down, serving a version is a 503 in words and every replica keeps predicting
  from its own copy; once it is back, a switch reaches the others again, with no restart.
Replica B predicts through a prediction worker process (PREDICT_WORKERS=1): the worker follows too.
The timing goal (2 s) is measured by benchmarks/replicas/switch_time.py on a quiet machine; here the
bound is looser, because the test suite shares 2 cores with everything else.
"""
from __future__ import annotations

import hashlib
import json
import statistics
import time
from pathlib import Path
from typing import NamedTuple

import httpx
import pytest

from benchmarks.attacks import hostile
from benchmarks.replicas.switch_time import PredictLoad, fingerprint, fingerprints, predict, switch, train_quick
from tests.app_server import copy_exports, running_apps, wait_for_workers
from tests.fakes import write_tiny_model

pytestmark = pytest.mark.slow

SWITCHES = 6
SWITCH_BOUND = 5.0  # s: each switch, on a shared 2-core machine (the benchmark's median is well under 2 s)


class Trio(NamedTuple):
    urls: list[str]
    data_dirs: list[Path]
    exports: Path
    database_url: str
    server: object  # tests/postgres.PostgresServer


@pytest.fixture(scope="module")
def trio(exports_copy, tmp_path_factory, postgres_server, shipped_models_available):
    if not shipped_models_available:
        pytest.skip("exports/ has no shipped models")
    folder = tmp_path_factory.mktemp("versions-replicas")
    url = postgres_server.new_database()
    exports = copy_exports(exports_copy, folder / "exports")
    apps = [(exports, folder / f"app{index}.log",
             {"DATABASE_URL": url, "PREDICT_WORKERS": "1" if index == 1 else "0", "TRAIN_TOKEN": None})
            for index in range(3)]
    try:
        with running_apps(apps) as running:
            urls = [app.url for app in running]
            wait_for_workers(lambda: httpx.get(urls[1] + "env", timeout=30).json(), 1)
            yield Trio(urls, [folder / f"app{index}-data" for index in range(3)], exports, url, postgres_server)
    finally:
        postgres_server.drop_database(url)


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def wait_for(predicate, timeout: float) -> float:
    started = time.monotonic()
    while not predicate():
        assert time.monotonic() - started < timeout, f"not within {timeout} s"
        time.sleep(0.02)
    return time.monotonic() - started


def test_a_version_kept_elsewhere_serves_on_every_replica_with_its_files_intact(trio, tmp_path):
    from store import open_database
    from training.model_versions import ModelVersions

    database = open_database(trio.database_url)
    try:
        writer = ModelVersions(data_dir=tmp_path / "cli", shipped_dir=trio.exports, database=database)
        write_tiny_model(writer, "model1", digit=7)  # always answers 7; the shipped model reads digit.png as 3
        number = writer.serving("model1")
        written = {path.name: sha256(path) for path in writer.files("model1", number).values()}
    finally:
        database.close()
    with httpx.Client(timeout=30) as http:
        seconds = wait_for(lambda: all(predict(http, url)["prediction"] == 7 for url in trio.urls), timeout=10)
        for url in trio.urls:
            assert http.get(url + "model_status").json()["model1"]["version"] == number
            listed = http.get(url + "models/model1/versions").json()
            assert [v["version"] for v in listed] == [number, 1] and listed[0]["serving"]
    for data_dir in trio.data_dirs:
        folder = data_dir / "versions" / "model1" / str(number)
        assert {path.name: sha256(path) for path in folder.iterdir() if path.name != "version.json"} == written
    print(f"\nversion {number} kept by another process served on 3 replicas after {seconds:.2f} s")


def test_serving_on_one_replica_switches_the_others_with_no_failed_prediction(trio):
    with httpx.Client(timeout=30) as http:
        number = max(v["version"] for v in http.get(trio.urls[0] + "models/model1/versions").json())
        known = fingerprints(http, trio.urls[0], [1, number])
        times = []
        with PredictLoad(trio.urls) as load:
            for index in range(SWITCHES):
                version = 1 if index % 2 == 0 else number
                times.append(switch(http, trio.urls, index % 3, version, known[version]))
                time.sleep(0.2)
        assert load.failures == [] and load.answered > 20, load.failures[:5]
        assert max(times) < SWITCH_BOUND, times
        assert http.post(trio.urls[2] + "models/model1/versions/99/serve").status_code == 404
        assert all(fingerprint(predict(http, url)) == known[number] for url in trio.urls)  # the 404 changed nothing
    print(f"\n{SWITCHES} switches: median {statistics.median(times):.2f} s, max {max(times):.2f} s; "
          f"{load.answered} predictions under way, none failed")


def test_a_model_trained_on_a_serves_on_b_and_c_without_a_restart(trio, mnist_dir):
    with httpx.Client(timeout=60) as http:
        number = train_quick(http, trio.urls[0])
        answer = fingerprint(predict(http, trio.urls[0]))
        wait_for(lambda: all(fingerprint(predict(http, url)) == answer for url in trio.urls[1:]), timeout=10)
        for url in trio.urls[1:]:
            assert http.get(url + "model_status").json()["model1"]["version"] == number
    files = {path.name: sha256(path) for path in (trio.data_dirs[0] / "versions" / "model1" / str(number)).iterdir()}
    for data_dir in trio.data_dirs[1:]:
        assert {path.name: sha256(path) for path in (data_dir / "versions" / "model1" / str(number)).iterdir()} == files


def test_while_postgresql_is_down_serving_is_503_and_predictions_go_on(trio):
    with httpx.Client(timeout=30) as http:
        listed = http.get(trio.urls[0] + "models/model1/versions").json()
        serving = next(v["version"] for v in listed if v["serving"])
        other = next(v["version"] for v in listed if not v["serving"])
        before = [fingerprint(predict(http, url)) for url in trio.urls]
        trio.server.stop("immediate")
        try:
            refused = http.post(f"{trio.urls[1]}models/model1/versions/{other}/serve")
            assert refused.status_code == 503 and "try again" in refused.json()["error"], refused.text
            assert http.get(trio.urls[2] + "models/model1/versions").status_code == 503
            # The Train tab's "what a run replaces" line says so in words instead of a Gradio error.
            panel = hostile.call(trio.urls[2], hostile.fn_indices(trio.urls[2])["personal_panel_model1"], [])
            assert panel["ok"] and "cannot be listed right now" in json.dumps(panel["last"]), panel
            assert [fingerprint(predict(http, url)) for url in trio.urls] == before  # served from local copies
        finally:
            trio.server.start_again()
        # Back: serving answers again (after the store's 1 s back-off), and the others follow it.
        wait_for(lambda: http.post(f"{trio.urls[0]}models/model1/versions/{serving}/serve").status_code == 200,
                 timeout=15)
        known = fingerprints(http, trio.urls[0], [serving, other])
        # Bounded loosely: the pool drops its dead connections and the listener reconnects first: a second or
        # two on a quiet machine, but over 10 s once while the whole suite ran (the 2 s target is the
        # benchmark's, with PostgreSQL up).
        wait_for(lambda: all(fingerprint(predict(http, url)) == known[other] for url in trio.urls[1:]), timeout=30)
