"""Model versions in the database (training/version_store.py, issue 20): two "replicas" (two data
locations, no shared disk) on one database, SQLite and a real PostgreSQL alike. A run kept through
one is stored with its files and serves there; the other fetches the files (SHA-256 checked) and
follows the serving pointer; a version damaged in the database is refused and the previous one keeps
serving; numbers never repeat across replicas; pruning deletes rows, never the serving version."""
from __future__ import annotations

import hashlib

import numpy as np
import pytest

from inference.predictor import Predictor
from tests.fakes import in_parallel, write_tiny_model
from training.model_versions import ModelVersions, VersionError
from training.version_store import VersionMirror


@pytest.fixture
def exports(model1_exports):
    return model1_exports  # tests/conftest.py: Model 1 alone in the shipped folder


def replica(exports, tmp_path, name, database, keep=5) -> ModelVersions:
    return ModelVersions(data_dir=tmp_path / name, shipped_dir=exports, database=database, keep=keep)


def sha256(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def digit_of(predictor: Predictor) -> int:
    return predictor.predict(np.zeros((28, 28, 1), np.float32), "model1").digit


def test_a_version_kept_on_one_replica_serves_on_the_other_with_its_files_intact(exports, tmp_path, database):
    a, b = replica(exports, tmp_path, "a", database), replica(exports, tmp_path, "b", database)
    predictor_b = Predictor(b)
    shipped_digit = digit_of(predictor_b)
    paths = write_tiny_model(a, "model1", digit=(shipped_digit + 1) % 10)  # a run on A: version 2
    assert a.serving("model1") == 2 and b.serving("model1") == 1  # B has not followed yet
    assert [v["version"] for v in b.list("model1")] == [2, 1]  # but lists it: the list is the database's
    assert b.list("model1")[0]["serving"] and b.list("model1")[0]["onnx_sha256"] == sha256(a.files("model1", 2)["onnx"])
    assert not (tmp_path / "b" / "versions" / "model1" / "2").exists()

    served = []
    assert VersionMirror(b, on_served=served.append).sync() == ["model1"]
    assert served == ["model1"] and b.serving("model1") == 2
    for kind, path in b.files("model1", 2).items():
        assert path.read_bytes() == (tmp_path / "a" / "versions" / "model1" / "2" / path.name).read_bytes(), kind
    record = b.describe("model1", 2)
    assert record["version"] == 2 and record["serving"]
    assert str(paths["onnx"]).startswith(str(tmp_path / "a"))
    assert digit_of(predictor_b) == (shipped_digit + 1) % 10  # the predictor follows the local serving.json

    b.serve("model1", 1)  # served on B: A follows
    assert VersionMirror(a).sync() == ["model1"] and a.serving("model1") == 1
    assert VersionMirror(a).sync() == []  # nothing more to do


def test_numbers_never_repeat_across_replicas_and_a_run_names_its_number(exports, tmp_path, database):
    a, b = replica(exports, tmp_path, "a", database), replica(exports, tmp_path, "b", database)
    write_tiny_model(a, "model1", digit=1)
    write_tiny_model(b, "model1", digit=2)  # B never fetched 2: its number still comes from the database
    write_tiny_model(a, "model1", digit=3)
    assert [v["version"] for v in a.list("model1")] == [4, 3, 2, 1]
    import json

    assert json.loads(b.files("model1", 3)["metadata"].read_text())["version"] == 3


def test_a_version_damaged_in_the_database_is_refused_and_the_previous_keeps_serving(exports, tmp_path, database):
    a, b = replica(exports, tmp_path, "a", database), replica(exports, tmp_path, "b", database)
    write_tiny_model(a, "model1", digit=5)
    b.serve("model1", 1)
    database.write(lambda tx: tx.execute("UPDATE model_version_files SET data = ? WHERE kind = 'onnx'",
                                         (b"not the model",)))
    with pytest.raises(VersionError, match="damaged"):
        b.serve("model1", 2)
    assert b.serving("model1") == 1 and not (tmp_path / "b" / "versions" / "model1" / "2").exists()
    # Served anyway through A (which has its own intact copy): B refuses to follow and keeps serving 1.
    a.serve("model1", 2)
    assert VersionMirror(b).sync() == [] and b.serving("model1") == 1


def test_pruning_deletes_rows_and_never_the_serving_version(exports, tmp_path, database):
    a = replica(exports, tmp_path, "a", database, keep=2)
    for digit in range(4):
        write_tiny_model(a, "model1", digit=digit, accuracy=0.5)
    assert [v["version"] for v in a.list("model1")] == [5, 1]
    rows = database.read(lambda tx: tx.execute("SELECT DISTINCT version FROM model_version_files").fetchall())
    assert sorted(row[0] for row in rows) == [5]
    assert not (tmp_path / "a" / "versions" / "model1" / "2").exists()
    with pytest.raises(VersionError, match="no version 3"):
        a.serve("model1", 3)


def test_a_replica_drops_its_copies_of_versions_pruned_elsewhere_but_not_what_it_serves(exports, tmp_path, database):
    a, b = replica(exports, tmp_path, "a", database, keep=2), replica(exports, tmp_path, "b", database)
    write_tiny_model(a, "model1", digit=1)
    VersionMirror(b).sync()  # B serves 2
    b.files("model1", 2)
    write_tiny_model(a, "model1", digit=2)  # 3 serves; 2 is pruned from the database (B still serves its copy)
    write_tiny_model(a, "model1", digit=3)  # 4 serves; 3 is pruned
    folder = tmp_path / "b" / "versions" / "model1"
    b.files("model1", 4)
    (folder / "9").mkdir()  # a folder of B's own (not a copy of the database's): never touched
    (folder / "9" / "version.json").write_text('{"version": 9}')
    assert (folder / "2").is_dir()  # serving here: kept until B serves another
    assert VersionMirror(b).sync() == ["model1"]  # B follows to 4, then drops its copy of 2
    assert sorted(p.name for p in folder.iterdir() if p.is_dir()) == ["4", "9"]


def test_without_a_database_the_files_are_all_there_is(exports, tmp_path, monkeypatch):
    monkeypatch.delenv("DATABASE_URL", raising=False)
    versions = ModelVersions(data_dir=tmp_path / "data", shipped_dir=exports)
    assert versions.catalog is None
    write_tiny_model(versions, "model1", digit=4)
    assert (tmp_path / "data" / "versions" / "model1" / "serving.json").is_file()


def test_runs_finishing_together_on_two_replicas_get_distinct_numbers(exports, tmp_path, database):
    replicas = [replica(exports, tmp_path, name, database, keep=10) for name in ("a", "b")]
    errors = in_parallel(lambda index: write_tiny_model(replicas[index % 2], "model1", digit=index), 4)
    assert errors == []
    assert [v["version"] for v in replicas[0].list("model1")] == [5, 4, 3, 2, 1]
    newest = replicas[0].list("model1")[0]
    for versions in replicas:  # each replica serves its own last run until it follows the database
        VersionMirror(versions).sync()
        assert versions.serving("model1") == 5 and versions.files("model1", 5)["onnx"].is_file()
    assert newest["serving"]


def test_a_switch_the_replica_could_not_read_is_followed_once_the_database_answers(exports, tmp_path, database,
                                                                                  monkeypatch):
    """Told of a switch while the database refused it (503 in its 1 s back-off after an outage), a replica
    served the old version until the next switch (seen in a suite run under load): its watcher now asks again."""
    from store import StoreUnavailableError
    from tests.postgres import wait_until

    a, b = replica(exports, tmp_path, "a", database), replica(exports, tmp_path, "b", database)
    read_pointers, refusals = b.catalog.pointers, [1]

    def refused_once():
        if refusals:
            refusals.pop()
            raise StoreUnavailableError("The database server does not answer right now (restarting?)")
        return read_pointers()

    monkeypatch.setattr(b.catalog, "pointers", refused_once)
    mirror = VersionMirror(b)
    mirror.start()
    try:
        write_tiny_model(a, "model1", digit=3)  # a run on A: version 2 serves there
        assert wait_until(lambda: b.serving("model1") == 2, timeout=10), "B never followed the switch it missed"
        assert not refusals
    finally:
        mirror.stop()
