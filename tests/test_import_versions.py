"""Moving a one-machine data location's model versions into another data location and its database
(training/import_versions.py): on SQLite and a real PostgreSQL, through the function and through
`python -m training.import_versions` in a process of its own with the environment the app would have."""
from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.fakes import write_tiny_model
from training.import_versions import CannotImport, import_versions
from training.model_versions import ModelVersions
from training.version_store import VersionMirror

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def exports(model1_exports):
    return model1_exports  # tests/conftest.py: Model 1 alone in the shipped folder


def sha256(path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def old_location(tmp_path, exports) -> ModelVersions:
    """A one-machine data location (no database) with versions 2, 3 and 4 of model1; 3 serves."""
    old = ModelVersions(data_dir=tmp_path / "old", shipped_dir=exports, database=None)
    for seed in (1, 2, 3):
        write_tiny_model(old, "model1", digit=seed, seed=seed, accuracy=0.9 + seed / 100)
    old.serve("model1", 3)
    return old


def test_every_version_is_copied_once_with_its_files_and_what_served_serves_on_every_replica(exports, tmp_path,
                                                                                             database):
    old = old_location(tmp_path, exports)
    new = ModelVersions(data_dir=tmp_path / "new", shipped_dir=exports, database=database)
    write_tiny_model(new, "model1", digit=7, seed=9)  # the new place has a version of its own: 2
    assert new.serving("model1") == 2

    done = import_versions(tmp_path / "old", new, models=["model1"])
    copied = {item.old: item.new for item in done if item.note.startswith("copied")}
    assert copied == {2: 3, 4: 4, 3: 5}  # oldest first but the serving one last, numbered by the target
    assert [item.note for item in done][-1] == "serves, as it did in the old location"
    for old_number, new_number in copied.items():
        old_files, new_files = old.files("model1", old_number), new.files("model1", new_number)
        assert new_files["onnx"].read_bytes() == old_files["onnx"].read_bytes()
        assert new_files["native"].read_bytes() == old_files["native"].read_bytes()
        metadata = json.loads(new_files["metadata"].read_text())
        old_metadata = json.loads(old_files["metadata"].read_text())
        assert metadata["version"] == new_number and metadata["trained_at"] == old_metadata["trained_at"]
        assert new.describe("model1", new_number)["accuracy"] == old.describe("model1", old_number)["accuracy"]
    assert new.serving("model1") == 5  # old version 3

    # Another replica on the same database follows, with the same bytes.
    other = ModelVersions(data_dir=tmp_path / "other", shipped_dir=exports, database=database)
    VersionMirror(other).sync()
    assert other.serving("model1") == 5
    assert sha256(other.files("model1", 5)["onnx"]) == sha256(old.files("model1", 3)["onnx"])

    # A second run copies nothing and keeps the numbers.
    again = import_versions(tmp_path / "old", new, models=["model1"])
    assert {item.old: item.new for item in again if item.note == "held already"} == copied
    assert [entry["version"] for entry in new.list("model1")] == [5, 4, 3, 2, 1]


def test_with_keep_serving_nothing_moves_the_serving_version_and_a_damaged_version_is_not_copied(exports, tmp_path,
                                                                                                 database):
    old_location(tmp_path, exports)
    (tmp_path / "old" / "versions" / "model1" / "2" / "model1.onnx").write_bytes(b"not the file its run wrote")
    new = ModelVersions(data_dir=tmp_path / "new", shipped_dir=exports, database=database)
    write_tiny_model(new, "model1", digit=7, seed=9)

    done = import_versions(tmp_path / "old", new, models=["model1"], serve=False)
    notes = {item.old: (item.new, item.note) for item in done}
    assert notes[2] == (None, "damaged: its ONNX file is not the one its run wrote")
    assert [notes[4][0], notes[3][0]] == [3, 4]  # the old serving version (3) last
    assert new.serving("model1") == 2  # its own version still serves
    assert [entry["version"] for entry in new.list("model1")] == [4, 3, 2, 1]


def test_refusals_are_one_line_each_and_copy_nothing(exports, tmp_path):
    new = ModelVersions(data_dir=tmp_path / "new", shipped_dir=exports, database=None)
    with pytest.raises(CannotImport, match="no versions/ folder"):
        import_versions(tmp_path / "nowhere", new)
    old_location(tmp_path, exports)
    with pytest.raises(CannotImport, match="unknown model 'model9'"):
        import_versions(tmp_path / "old", new, models=["model9"])
    with pytest.raises(CannotImport, match="the target's own data location"):
        import_versions(tmp_path / "new", ModelVersions(data_dir=tmp_path / "new", shipped_dir=exports,
                                                        database=None))
    assert not (tmp_path / "new" / "versions").exists()


def test_the_command_moves_a_data_location_onto_postgresql(exports, tmp_path, postgres_url):
    old_location(tmp_path, exports)
    env = {**os.environ, "DATABASE_URL": postgres_url, "DATA_DIR": str(tmp_path / "replica"),
           "EXPORTS_DIR": str(exports)}

    def run(*args):
        return subprocess.run([sys.executable, "-m", "training.import_versions", *args], cwd=ROOT, env=env,
                              capture_output=True, text=True, timeout=120)

    result = run(str(tmp_path / "old"), "--models", "model1")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.strip().splitlines()
    assert lines[:3] == [f"model1: version {old} -> version {new} (copied, MNIST test {0.9 + (old - 1) / 100:.2%})"
                         for old, new in ((2, 2), (4, 3), (3, 4))]
    assert lines[3] == "model1: version 3 -> version 4 (serves, as it did in the old location)"
    assert lines[-1] == "3 version(s) copied into the database at DATABASE_URL"

    from store import open_database

    database = open_database(postgres_url)
    try:
        fresh = ModelVersions(data_dir=tmp_path / "fresh", shipped_dir=exports, database=database)
        assert fresh.catalog.serving("model1") == 4
        assert [entry["version"] for entry in fresh.list("model1")] == [4, 3, 2, 1]
    finally:
        database.close()

    for args, words in [((str(tmp_path / "missing"),), "holds no model versions"),
                        ((str(tmp_path / "old"), "--models", "model9"), "unknown model 'model9'")]:
        refused = run(*args)
        assert refused.returncode == 2 and refused.stdout == ""
        assert refused.stderr.strip().startswith("import_versions: ") and words in refused.stderr
        assert len(refused.stderr.strip().splitlines()) == 1  # one line, no traceback


def test_the_version_that_served_survives_the_targets_pruning(exports, tmp_path, database):
    old = old_location(tmp_path, exports)
    old.serve("model1", 2)  # the oldest serves
    new = ModelVersions(data_dir=tmp_path / "new", shipped_dir=exports, database=database, keep=2)
    import_versions(tmp_path / "old", new, models=["model1"])
    serving = new.serving("model1")
    assert sha256(new.files("model1", serving)["onnx"]) == sha256(old.files("model1", 2)["onnx"])
    assert [entry["version"] for entry in new.list("model1")] == [serving, 1]  # keep=2 counts the shipped one


def test_a_version_whose_record_or_file_cannot_be_read_is_skipped_in_words_and_the_rest_copied(exports, tmp_path):
    old = old_location(tmp_path, exports)
    folder = tmp_path / "old" / "versions" / "model1"
    (folder / "2" / "version.json").write_text("{not json")
    (folder / "4" / "model1.onnx").unlink()
    assert [entry["version"] for entry in old.list("model1")] == [4, 3, 2, 1]  # listed by their folders' numbers
    new = ModelVersions(data_dir=tmp_path / "new", shipped_dir=exports, database=None)
    notes = {item.old: (item.new, item.note) for item in import_versions(tmp_path / "old", new)}
    assert notes[2] == (None, "no SHA-256 recorded to check its ONNX file against: its version.json is unreadable")
    assert notes[4][0] is None and notes[4][1].startswith("its ONNX file cannot be read (")
    assert notes[3][0] == 2 and new.serving("model1") == 2  # the serving one copied and serving

