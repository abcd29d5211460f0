"""The MNIST loader: formats, validation, search order, download verification, real data."""
from __future__ import annotations

import gzip
import hashlib
import os
import urllib.request
from pathlib import Path

import numpy as np
import pytest

from tests.app_server import run_python
from training import mnist as loader
from training.mnist import (MnistFormatError, MnistNotFoundError, load_mnist, locate_mnist,
                            split_validation)

NAMES = {role: name for role, (name, _) in loader.IDX_FILES.items()}


def idx_bytes(array: np.ndarray, magic_rank: int | None = None) -> bytes:
    rank = array.ndim if magic_rank is None else magic_rank
    return bytes([0, 0, 8, rank]) + np.asarray(array.shape, dtype=">u4").tobytes() + array.astype(np.uint8).tobytes()


def tiny_set(seed: int = 0, n_train: int = 12, n_test: int = 5) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {
        "x_train": rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
        "y_train": rng.integers(0, 10, n_train).astype(np.uint8),
        "x_test": rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
        "y_test": rng.integers(0, 10, n_test).astype(np.uint8),
    }


def write_idx_folder(folder: Path, arrays: dict[str, np.ndarray], *, compress: bool = True) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for role, array in arrays.items():
        data = idx_bytes(array)
        if compress:
            (folder / f"{NAMES[role]}.gz").write_bytes(gzip.compress(data))
        else:
            (folder / NAMES[role]).write_bytes(data)
    return folder


def expected_sha256(arrays: dict[str, np.ndarray]) -> str:
    digest = hashlib.sha256()
    for role in ("x_train", "y_train", "x_test", "y_test"):
        digest.update(idx_bytes(arrays[role]))
    return digest.hexdigest()


def assert_same(data: loader.MnistData, arrays: dict[str, np.ndarray]) -> None:
    for role, array in arrays.items():
        loaded = getattr(data, role)
        np.testing.assert_array_equal(loaded, array)
        assert loaded.dtype == (np.int64 if role.startswith("y") else np.uint8)


@pytest.fixture
def no_env(tmp_path, monkeypatch) -> Path:
    """No MNIST_DIR, an empty cache, and any network call fails the test."""
    monkeypatch.delenv("MNIST_DIR", raising=False)
    monkeypatch.delenv("MNIST_DOWNLOAD", raising=False)
    cache = tmp_path / "cache"
    monkeypatch.setenv("MNIST_CACHE", str(cache))

    def no_network(*args, **kwargs):
        raise AssertionError("the loader touched the network")

    monkeypatch.setattr(loader.urllib.request, "urlopen", no_network)
    return cache


# --------------------------------------------------------------------------- formats


def test_reads_gzip_idx_files(tmp_path, no_env):
    arrays = tiny_set()
    folder = write_idx_folder(tmp_path / "gz", arrays)
    data = load_mnist(folder, download=False)
    assert_same(data, arrays)
    assert data.source == str(folder.resolve())
    assert data.sha256 == expected_sha256(arrays)
    assert not data.is_official


def test_reads_raw_idx_files_with_the_same_checksum(tmp_path, no_env):
    arrays = tiny_set()
    raw = load_mnist(write_idx_folder(tmp_path / "raw", arrays, compress=False), download=False)
    gz = load_mnist(write_idx_folder(tmp_path / "gz", arrays), download=False)
    assert_same(raw, arrays)
    assert raw.sha256 == gz.sha256 == expected_sha256(arrays)


def test_reads_keras_npz_from_a_folder_or_the_file(tmp_path, no_env):
    arrays = tiny_set(seed=1)
    folder = tmp_path / "npz"
    folder.mkdir()
    np.savez(folder / "mnist.npz", **arrays)
    from_folder = load_mnist(folder, download=False)
    from_file = load_mnist(folder / "mnist.npz", download=False)
    assert_same(from_folder, arrays)
    assert_same(from_file, arrays)
    # The checksum is defined on the IDX content, so the same data has the same sha256 in both formats.
    assert from_folder.sha256 == expected_sha256(arrays)


def test_parsed_arrays_are_cached_and_read_only(tmp_path, no_env):
    folder = write_idx_folder(tmp_path / "gz", tiny_set())
    first = load_mnist(folder, download=False)
    assert load_mnist(folder, download=False) is first
    with pytest.raises(ValueError):
        first.x_train[0, 0, 0] = 1
    # A file replaced in place is read again.
    changed = tiny_set(seed=5)
    write_idx_folder(folder, changed)
    os.utime(folder / f"{NAMES['y_test']}.gz", ns=(1, 1))
    assert_same(load_mnist(folder, download=False), changed)


def test_gzip_is_sniffed_by_content_not_name(tmp_path, no_env):
    arrays = tiny_set()
    folder = write_idx_folder(tmp_path / "mixed", arrays, compress=False)
    # A gzip file under the raw name still loads.
    path = folder / NAMES["x_train"]
    path.write_bytes(gzip.compress(path.read_bytes()))
    assert_same(load_mnist(folder, download=False), arrays)


# --------------------------------------------------------------------------- validation


def test_bad_magic_number_is_a_clear_error(tmp_path, no_env):
    arrays = tiny_set()
    folder = write_idx_folder(tmp_path / "bad", arrays)
    (folder / f"{NAMES['x_train']}.gz").write_bytes(gzip.compress(b"\x12\x34\x56\x78" + bytes(100)))
    with pytest.raises(MnistFormatError, match="not an IDX file.*magic") as info:
        load_mnist(folder, download=False)
    assert NAMES["x_train"] in str(info.value)


def test_images_file_holding_labels_is_rejected(tmp_path, no_env):
    arrays = tiny_set()
    folder = write_idx_folder(tmp_path / "swapped", arrays)
    (folder / f"{NAMES['x_test']}.gz").write_bytes(gzip.compress(idx_bytes(arrays["y_test"])))
    with pytest.raises(MnistFormatError, match="1 dimensions, expected 3"):
        load_mnist(folder, download=False)


def test_truncated_file_is_rejected(tmp_path, no_env):
    arrays = tiny_set()
    folder = write_idx_folder(tmp_path / "short", arrays, compress=False)
    path = folder / NAMES["x_train"]
    path.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(MnistFormatError, match=r"header says shape \(12, 28, 28\)"):
        load_mnist(folder, download=False)


def test_label_count_must_match_images(tmp_path, no_env):
    arrays = tiny_set()
    arrays["y_train"] = arrays["y_train"][:-1]
    folder = write_idx_folder(tmp_path / "counts", arrays)
    with pytest.raises(MnistFormatError, match="12 train images but labels of shape"):
        load_mnist(folder, download=False)


def test_image_size_must_be_28x28(tmp_path, no_env):
    arrays = tiny_set()
    arrays["x_test"] = np.zeros((5, 32, 32), dtype=np.uint8)
    with pytest.raises(MnistFormatError, match=r"expected \[N, 28, 28\]"):
        load_mnist(write_idx_folder(tmp_path / "size", arrays), download=False)


def test_damaged_gzip_is_a_format_error(tmp_path, no_env):
    folder = write_idx_folder(tmp_path / "damaged", tiny_set())
    path = folder / f"{NAMES['x_train']}.gz"
    path.write_bytes(path.read_bytes()[:40])
    with pytest.raises(MnistFormatError, match="damaged gzip"):
        load_mnist(folder, download=False)


# --------------------------------------------------------------------------- search order


def test_search_order_path_then_env_then_cache(tmp_path, no_env, monkeypatch):
    explicit = write_idx_folder(tmp_path / "explicit", tiny_set(seed=1))
    env = write_idx_folder(tmp_path / "env", tiny_set(seed=2))
    write_idx_folder(no_env, tiny_set(seed=3))

    monkeypatch.setenv("MNIST_DIR", str(env))
    assert load_mnist(explicit, download=False).source == str(explicit.resolve())
    assert load_mnist(download=False).source == str(env.resolve())
    assert locate_mnist() == env.resolve()
    # A MNIST_DIR without the data falls through to the cache.
    monkeypatch.setenv("MNIST_DIR", str(tmp_path / "missing"))
    data = load_mnist(download=False)
    assert data.source == str(no_env.resolve())
    assert_same(data, tiny_set(seed=3))
    monkeypatch.delenv("MNIST_DIR")
    assert locate_mnist() == no_env.resolve()
    # cache_dir= overrides $MNIST_CACHE.
    other_cache = write_idx_folder(tmp_path / "other_cache", tiny_set(seed=4))
    assert load_mnist(download=False, cache_dir=other_cache).source == str(other_cache.resolve())


def test_locate_mnist_is_none_when_nothing_is_local(tmp_path, no_env, monkeypatch):
    monkeypatch.setenv("MNIST_DIR", str(tmp_path / "missing"))
    assert locate_mnist() is None  # and no_env proves it never downloaded
    assert locate_mnist(tmp_path / "also-missing") is None


def test_incomplete_folder_names_the_missing_files(tmp_path, no_env, monkeypatch):
    folder = write_idx_folder(tmp_path / "partial", tiny_set())
    (folder / f"{NAMES['y_test']}.gz").unlink()
    with pytest.raises(MnistNotFoundError, match=r"incomplete: missing t10k-labels-idx1-ubyte\[\.gz\]"):
        load_mnist(folder, download=False)


def test_nothing_found_lists_every_place_and_the_fixes(tmp_path, no_env, monkeypatch):
    missing_env = tmp_path / "no-such-dir"
    monkeypatch.setenv("MNIST_DIR", str(missing_env))
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(MnistNotFoundError) as info:
        load_mnist(empty, download=False)
    message = str(info.value)
    assert isinstance(info.value, FileNotFoundError)
    assert f"path argument {empty}: holds no MNIST files" in message
    assert f"$MNIST_DIR {missing_env}: does not exist" in message
    assert f"cache {no_env}: does not exist" in message
    assert "download: disabled (this caller reads local copies only)" in message
    assert "set the environment variable MNIST_DIR" in message and "allow the download" in message
    # Shown as is by the CLI, REST /train and the Train tab: no Python argument their users cannot set.
    assert "download=" not in message
    # In search order.
    assert message.index("path argument") < message.index("$MNIST_DIR") < message.index("cache") < message.index("download")


def test_offline_says_the_download_failed_and_what_to_do(tmp_path, no_env, file_urls, monkeypatch):
    dead = (tmp_path / "unreachable").as_uri() + "/"  # every mirror fails, as offline
    monkeypatch.setattr(loader, "MIRRORS", (dead,))
    with pytest.raises(MnistNotFoundError) as info:
        load_mnist()
    message = str(info.value)
    assert f"download into {no_env}: could not download" in message and dead in message
    assert "the download failed (no internet access here?)" in message
    assert "set the environment variable MNIST_DIR" in message and "--mnist-dir" in message
    assert "download=" not in message and "allow the download" not in message  # it was allowed: it failed


def test_mnist_download_env_disables_the_download(no_env, monkeypatch):
    monkeypatch.setenv("MNIST_DOWNLOAD", "0")
    with pytest.raises(MnistNotFoundError, match=r"(?s)\$MNIST_DIR: not set.*download: disabled"):
        load_mnist(download=True)  # no_env fails the test on any network call


def test_import_touches_no_network():
    code = ("import socket, urllib.request\n"
            "def boom(*a, **k): raise SystemExit('network used at import')\n"
            "socket.socket = boom; socket.create_connection = boom; urllib.request.urlopen = boom\n"
            "import training.mnist, training.model1_logreg, training.registry\n")
    result = run_python(code)
    assert result.returncode == 0, result.stderr


# --------------------------------------------------------------------------- download


def serve_gzip_folder(folder: Path, arrays: dict[str, np.ndarray]) -> str:
    """A file:// "mirror" holding the gzip IDX files."""
    write_idx_folder(folder, arrays)
    return folder.as_uri() + "/"


def checksums_of(arrays) -> dict[str, tuple[str, str]]:
    return {role: (NAMES[role], hashlib.sha256(idx_bytes(arrays[role])).hexdigest()) for role in arrays}


@pytest.fixture
def file_urls(monkeypatch):
    """urlopen for file:// URLs only: the mirrors are local folders, anything else fails the test."""
    opener = urllib.request.build_opener()

    def local_only(request, *args, **kwargs):
        url = getattr(request, "full_url", request)
        assert url.startswith("file://"), f"test tried the network: {url}"
        return opener.open(request, *args, **kwargs)

    monkeypatch.setattr(loader.urllib.request, "urlopen", local_only)


def test_download_rejects_a_checksum_mismatch(tmp_path, no_env, file_urls, monkeypatch):
    # The tiny files are not the published MNIST, so their checksums cannot match.
    mirror = serve_gzip_folder(tmp_path / "mirror", tiny_set())
    monkeypatch.setattr(loader, "MIRRORS", (mirror,))
    with pytest.raises(MnistNotFoundError) as info:
        load_mnist(download=True)
    message = str(info.value)
    assert "checksum mismatch" in message and mirror in message
    assert not no_env.exists(), "a rejected download left files (or a folder) in the cache"


def test_download_tries_mirrors_in_turn_and_caches_atomically(tmp_path, no_env, file_urls, monkeypatch):
    arrays = tiny_set(seed=7)
    good = serve_gzip_folder(tmp_path / "good", arrays)
    dead = (tmp_path / "dead").as_uri() + "/"
    wrong = serve_gzip_folder(tmp_path / "wrong", tiny_set(seed=8))
    monkeypatch.setattr(loader, "IDX_FILES", checksums_of(arrays))
    monkeypatch.setattr(loader, "MIRRORS", (dead, wrong, good))

    data = load_mnist(download=True)
    assert_same(data, arrays)
    assert data.source == str(no_env.resolve())
    assert sorted(p.name for p in no_env.iterdir()) == sorted(f"{name}.gz" for name in NAMES.values())
    # Next time the cache answers: no mirror is needed.
    monkeypatch.setattr(loader, "MIRRORS", ())
    assert load_mnist(download=True).source == str(no_env.resolve())


# --------------------------------------------------------------------------- validation split


def test_split_validation_is_disjoint_and_seeded():
    x = np.arange(1000)
    y = x % 10
    x_tr, y_tr, x_val, y_val = split_validation(x, y, size=100, seed=3)
    assert len(x_val) == 100 and len(x_tr) == 900
    assert set(x_tr).isdisjoint(x_val) and set(x_tr) | set(x_val) == set(x)
    np.testing.assert_array_equal(y_val, x_val % 10)
    again = split_validation(x, y, size=100, seed=3)
    np.testing.assert_array_equal(again[2], x_val)
    assert not np.array_equal(split_validation(x, y, size=100, seed=4)[2], x_val)
    with pytest.raises(ValueError, match="validation size"):
        split_validation(x, y, size=1000)


# --------------------------------------------------------------------------- real data


def test_real_mnist_shapes_dtypes_and_label_counts(mnist):
    assert mnist.x_train.shape == (60000, 28, 28) and mnist.x_train.dtype == np.uint8
    assert mnist.x_test.shape == (10000, 28, 28) and mnist.x_test.dtype == np.uint8
    assert mnist.y_train.shape == (60000,) and mnist.y_train.dtype == np.int64
    assert mnist.y_test.shape == (10000,) and mnist.y_test.dtype == np.int64
    assert np.bincount(mnist.y_train).tolist() == [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
    assert np.bincount(mnist.y_test).tolist() == [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
    assert mnist.sha256 == loader.OFFICIAL_SHA256 and mnist.is_official
    # White digits on black: the border is background.
    assert mnist.x_train[:, 0, :].mean() < 0.1 and mnist.x_train[:, 10:18, 10:18].mean() > 50


def test_real_mnist_split_holds_out_5000(mnist):
    x_tr, y_tr, x_val, y_val = split_validation(mnist.x_train, mnist.y_train)
    assert x_tr.shape == (55000, 28, 28) and x_val.shape == (5000, 28, 28)
    assert np.bincount(y_val, minlength=10).min() > 350  # every digit is represented
