"""The MNIST data set as uint8 arrays, from local files or (once) from a public mirror.

Search order, first hit wins:
    1. the `path` argument (a folder, or an .npz file)
    2. $MNIST_DIR
    3. the local cache: $MNIST_CACHE, else <data dir>/cache/mnist (datadir.py); a copy an earlier
       version downloaded into ~/.cache/digit-studio/mnist is still read
    4. a download of the four original gzip IDX files from public mirrors into the cache,
       each verified by the SHA-256 of its uncompressed content (about 11 MB; off with
       MNIST_DOWNLOAD=0, or download=False from Python)

A folder holds MNIST when it has the four original IDX files (gzip or raw, standard
names such as `train-images-idx3-ubyte.gz`) or a keras-style `mnist.npz`
(keys x_train, y_train, x_test, y_test). Nothing touches the network at import time.

Parsed arrays are cached in-process and returned read-only, because training runs
in the app load the data set again and again; copy them before changing them.
"""
from __future__ import annotations

import functools
import gzip
import hashlib
import http.client
import os
import secrets
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

IMAGE_SIZE = 28
NUM_CLASSES = 10

# The four IDX files: role -> (standard name, SHA-256 of the uncompressed file).
IDX_FILES: dict[str, tuple[str, str]] = {
    "x_train": ("train-images-idx3-ubyte", "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db"),
    "y_train": ("train-labels-idx1-ubyte", "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5"),
    "x_test": ("t10k-images-idx3-ubyte", "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7"),
    "y_test": ("t10k-labels-idx1-ubyte", "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2"),
}
# MnistData.sha256 of the published set: the four files above, uncompressed, concatenated in that order.
OFFICIAL_SHA256 = "b2d8f5bf39174ee5ffeefa97e42d673c35432b411bb5d1f74fbbeddae7f1690a"
NPZ_NAME = "mnist.npz"

# Well-known copies of the original gzip files (yann.lecun.com itself often refuses downloads).
MIRRORS = (
    "https://ossci-datasets.s3.amazonaws.com/mnist/",  # used by torchvision
    "https://storage.googleapis.com/cvdf-datasets/mnist/",  # used by TensorFlow
    "http://yann.lecun.com/exdb/mnist/",  # the original
)
DOWNLOAD_TIMEOUT = 60  # seconds per request

# Where earlier versions downloaded MNIST (read, never written): no second download after an update.
LEGACY_CACHE_DIR = Path.home() / ".cache" / "digit-studio" / "mnist"

_IDX_MAGIC_UBYTE = 0x08  # IDX type code for unsigned bytes; the 4th magic byte is the rank
_GZIP_MAGIC = b"\x1f\x8b"


class MnistError(Exception):
    """Base class of the loader's errors."""


class MnistNotFoundError(MnistError, FileNotFoundError):
    """No MNIST copy anywhere the loader looked; the message lists the places and the fixes."""


class MnistFormatError(MnistError, ValueError):
    """A file was found but is not a valid MNIST IDX / npz file."""


@dataclass(frozen=True, eq=False)
class MnistData:
    x_train: np.ndarray  # uint8 [60000, 28, 28], white digit on black
    y_train: np.ndarray  # int64 [60000], 0-9
    x_test: np.ndarray  # uint8 [10000, 28, 28]
    y_test: np.ndarray  # int64 [10000]
    source: str  # where it was read from (folder or .npz file)
    sha256: str  # of the four uncompressed IDX files concatenated (train images, train labels, test images, test labels)

    @property
    def is_official(self) -> bool:
        """True when the content is byte-identical to the published MNIST."""
        return self.sha256 == OFFICIAL_SHA256


# --------------------------------------------------------------------------- search


def resolve_cache_dir(override: str | os.PathLike | None = None) -> Path:
    """The download cache: `override`, else $MNIST_CACHE, else <data dir>/cache/mnist."""
    import datadir

    return Path(override or os.environ.get("MNIST_CACHE") or datadir.cache_dir("mnist")).expanduser()


def download_allowed(download: bool = True) -> bool:
    return download and os.environ.get("MNIST_DOWNLOAD", "1").strip().lower() not in ("0", "false", "no", "off")


def _local_places(path, cache) -> list[tuple[str, Path | None]]:
    """(label, place) in search order; place None means "not configured"."""
    env = os.environ.get("MNIST_DIR")
    places: list[tuple[str, Path | None]] = []
    if path is not None:
        places.append(("path argument", Path(path).expanduser()))
    places.append(("$MNIST_DIR", Path(env).expanduser() if env else None))
    places.append(("cache", resolve_cache_dir(cache)))
    if cache is None and not os.environ.get("MNIST_CACHE") and LEGACY_CACHE_DIR.is_dir():
        places.append(("earlier cache", LEGACY_CACHE_DIR))
    return places


def _find_files(place: Path) -> tuple[Path | dict[str, Path] | None, str]:
    """What MNIST files `place` holds: an npz path, the four IDX paths, or None plus why not."""
    if place.is_file():
        if place.suffix == ".npz":
            return place, ""
        return None, "is a file, not a folder or an .npz file"
    if not place.is_dir():
        return None, "does not exist"
    idx: dict[str, Path] = {}
    missing = []
    for role, (name, _) in IDX_FILES.items():
        found = next((place / f for f in (name + ".gz", name) if (place / f).is_file()), None)
        if found is None:
            missing.append(name + "[.gz]")
        else:
            idx[role] = found
    if not missing:
        return idx, ""
    if (place / NPZ_NAME).is_file():
        return place / NPZ_NAME, ""
    if idx:
        return None, f"incomplete: missing {', '.join(missing)}"
    return None, f"holds no MNIST files (no {NPZ_NAME}, no {IDX_FILES['x_train'][0]}[.gz], ...)"


def locate_mnist(path: str | os.PathLike | None = None, *, cache_dir: str | os.PathLike | None = None) -> Path | None:
    """The first local place holding MNIST (folder or .npz file), or None. Never downloads."""
    for _, place in _local_places(path, cache_dir):
        if place is not None:
            files, _ = _find_files(place)
            if files is not None:
                return place.resolve()
    return None


def load_mnist(
    path: str | os.PathLike | None = None,
    *,
    download: bool = True,
    cache_dir: str | os.PathLike | None = None,
) -> MnistData:
    """MNIST from the first place that has it (see the module docstring).

    Raises MnistNotFoundError (a FileNotFoundError) naming every place tried,
    or MnistFormatError when a found file is damaged.
    """
    tried: list[str] = []
    for label, place in _local_places(path, cache_dir):
        if place is None:
            tried.append(f"{label}: not set")
            continue
        files, why = _find_files(place)
        if files is not None:
            return _load_cached(place.resolve(), _signature(files))
        tried.append(f"{label} {place}: {why}")

    cache = resolve_cache_dir(cache_dir)
    download_failed = False
    if not download_allowed(download):
        # Say who turned it off: the environment (which a user can change) or the calling code.
        why = "MNIST_DOWNLOAD=0 is set" if download else "this caller reads local copies only"
        tried.append(f"download: disabled ({why})")
    else:
        try:
            download_mnist(cache)
        except (MnistError, OSError) as error:
            download_failed = True
            tried.append(f"download into {cache}: {error}")
        else:
            return _load_cached(cache.resolve(), _signature(_find_files(cache)[0]))
    raise MnistNotFoundError(_not_found_message(tried, cache, download_failed))


def _not_found_message(tried: list[str], cache: Path, download_failed: bool) -> str:
    """What was tried and how to fix it, in words that hold wherever the error is shown: the CLI,
    REST /train's error and the Train tab all get this text, so it names environment variables
    (set where the app or `python -m training` runs), never a Python argument."""
    names = ", ".join(name + ".gz" for name, _ in IDX_FILES.values())
    if download_failed:
        download = ("the download failed (no internet access here?): copy the four files from a machine that has "
                    "them, or retry where the mirrors can be reached")
    else:
        download = (f"allow the download (unset MNIST_DOWNLOAD, or set it to 1) so that it is fetched once "
                    f"(about 11 MB) into {cache}")
    return ("MNIST data set not found. Tried, in order:\n"
            + "".join(f"  {i}. {line}\n" for i, line in enumerate(tried, 1))
            + f"Fix: set the environment variable MNIST_DIR to a folder holding the four IDX files ({names}; raw "
            f"files also work) or a keras-style {NPZ_NAME}, where the app or `python -m training` runs "
            f"(`python -m training` also takes --mnist-dir); or {download}.")


# --------------------------------------------------------------------------- parsing


def _signature(files: Path | dict[str, Path]) -> tuple:
    # Size and mtime in the cache key: a file replaced in place is parsed again.
    paths = [files] if isinstance(files, Path) else list(files.values())
    return tuple((str(p), p.stat().st_size, p.stat().st_mtime_ns) for p in paths)


@functools.lru_cache(maxsize=4)
def _load_cached(place: Path, signature: tuple) -> MnistData:
    paths = [Path(entry[0]) for entry in signature]
    if len(paths) == 1:
        return _load_npz(paths[0], source=str(place))
    return _load_idx_files(dict(zip(IDX_FILES, paths)), source=str(place))


def _read_bytes(path: Path) -> bytes:
    data = path.read_bytes()
    # Sniff gzip by content, not by name: a renamed file still loads.
    if data[:2] == _GZIP_MAGIC:
        try:
            return gzip.decompress(data)
        except (OSError, EOFError) as error:
            raise MnistFormatError(f"{path}: damaged gzip file ({error})") from None
    return data


def parse_idx(data: bytes, *, name: str = "IDX data", rank: int | None = None) -> np.ndarray:
    """A uint8 array from the bytes of an IDX file (unsigned-byte type only, as MNIST uses)."""
    if len(data) < 4 or data[0] != 0 or data[1] != 0:
        raise MnistFormatError(f"{name}: not an IDX file (bad magic number {data[:4].hex() or 'empty'})")
    if data[2] != _IDX_MAGIC_UBYTE:
        raise MnistFormatError(f"{name}: IDX type 0x{data[2]:02x} is not unsigned byte (0x08)")
    ndim = data[3]
    if rank is not None and ndim != rank:
        raise MnistFormatError(f"{name}: IDX magic says {ndim} dimensions, expected {rank} "
                               f"(magic 0x{0x800 + rank:08x}, found 0x{int.from_bytes(data[:4], 'big'):08x})")
    header = 4 + 4 * ndim
    if len(data) < header:
        raise MnistFormatError(f"{name}: truncated IDX header")
    shape = tuple(int(d) for d in np.frombuffer(data, dtype=">u4", count=ndim, offset=4))
    expected = header + int(np.prod(shape, dtype=np.int64))
    if len(data) != expected:
        raise MnistFormatError(f"{name}: IDX header says shape {shape} ({expected} bytes) but the file has {len(data)} bytes")
    return np.frombuffer(data, dtype=np.uint8, offset=header).reshape(shape)


def _idx_bytes(array: np.ndarray) -> bytes:
    """The IDX serialisation of a uint8 array (used to checksum npz data like IDX files)."""
    header = bytes([0, 0, _IDX_MAGIC_UBYTE, array.ndim]) + np.asarray(array.shape, dtype=">u4").tobytes()
    return header + np.ascontiguousarray(array, dtype=np.uint8).tobytes()


def _load_idx_files(paths: dict[str, Path], *, source: str) -> MnistData:
    # zlib releases the GIL, so the two big files decompress side by side.
    with ThreadPoolExecutor(max_workers=2) as pool:
        raw = dict(zip(paths, pool.map(_read_bytes, paths.values())))
    digest = hashlib.sha256()
    for role in IDX_FILES:
        digest.update(raw[role])
    arrays = {role: parse_idx(raw[role], name=str(paths[role]), rank=3 if role.startswith("x") else 1)
              for role in IDX_FILES}
    return _make_data(arrays, source=source, sha256=digest.hexdigest())


def _load_npz(path: Path, *, source: str) -> MnistData:
    try:
        with np.load(path, allow_pickle=False) as npz:
            missing = [key for key in IDX_FILES if key not in npz.files]
            if missing:
                raise MnistFormatError(f"{path}: missing keys {missing} (expected x_train, y_train, x_test, y_test)")
            arrays = {key: npz[key] for key in IDX_FILES}
    except (OSError, ValueError) as error:
        if isinstance(error, MnistFormatError):
            raise
        raise MnistFormatError(f"{path}: not a readable .npz file ({error})") from None
    for key, array in arrays.items():
        if array.dtype.kind not in "ui" or (array.size and (array.min() < 0 or array.max() > 255)):
            raise MnistFormatError(f"{path}: {key} must hold integers 0-255, got dtype {array.dtype}")
        arrays[key] = array.astype(np.uint8)
    digest = hashlib.sha256()
    for role in IDX_FILES:
        digest.update(_idx_bytes(arrays[role]))
    return _make_data(arrays, source=source, sha256=digest.hexdigest())


def _make_data(arrays: dict[str, np.ndarray], *, source: str, sha256: str) -> MnistData:
    for split in ("train", "test"):
        images, labels = arrays[f"x_{split}"], arrays[f"y_{split}"]
        if images.ndim != 3 or images.shape[1:] != (IMAGE_SIZE, IMAGE_SIZE):
            raise MnistFormatError(f"{source}: {split} images have shape {images.shape}, expected [N, 28, 28]")
        if labels.shape != (len(images),):
            raise MnistFormatError(f"{source}: {len(images)} {split} images but labels of shape {labels.shape}")
        if labels.size and labels.max() >= NUM_CLASSES:
            raise MnistFormatError(f"{source}: {split} labels go up to {labels.max()}, expected 0-9")
    out = {}
    for key, array in arrays.items():
        array = array.astype(np.int64) if key.startswith("y") else array
        array.flags.writeable = False  # shared by every caller through the in-process cache
        out[key] = array
    return MnistData(**out, source=source, sha256=sha256)


# --------------------------------------------------------------------------- download


def download_mnist(cache: str | os.PathLike | None = None, *, mirrors: tuple[str, ...] | None = None) -> Path:
    """Fetch the four gzip IDX files into `cache`, each verified by its uncompressed SHA-256.

    Files already in the cache with the right checksum are kept. Each file is written to a
    temporary name and renamed into place, so a cut download never leaves a damaged file.
    Raises MnistError naming every mirror that failed and why.
    """
    folder = resolve_cache_dir(cache)
    mirrors = MIRRORS if mirrors is None else mirrors
    for name, expected in IDX_FILES.values():
        target = folder / (name + ".gz")
        if target.is_file() and _sha256_uncompressed(target) == expected:
            continue
        failures = []
        for mirror in mirrors:
            url = mirror + name + ".gz"
            try:
                payload = _fetch(url)
                content = gzip.decompress(payload) if payload[:2] == _GZIP_MAGIC else payload
            except (OSError, EOFError, ValueError, http.client.HTTPException) as error:
                failures.append(f"{url}: {error}")
                continue
            actual = hashlib.sha256(content).hexdigest()
            if actual != expected:
                failures.append(f"{url}: checksum mismatch (got {actual[:12]}..., expected {expected[:12]}...)")
                continue
            _write_atomic(target, payload if payload[:2] == _GZIP_MAGIC else gzip.compress(content))
            break
        else:
            raise MnistError(f"could not download {name}.gz: " + "; ".join(failures))
    return folder


def _fetch(url: str) -> bytes:
    request = urllib.request.Request(url, headers={"User-Agent": "digit-studio (MNIST loader)"})
    with urllib.request.urlopen(request, timeout=DOWNLOAD_TIMEOUT) as response:
        return response.read()


def _sha256_uncompressed(path: Path) -> str | None:
    try:
        return hashlib.sha256(_read_bytes(path)).hexdigest()
    except (OSError, MnistFormatError):
        return None


def _write_atomic(target: Path, data: bytes) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)  # only now: a failed download leaves no empty folder
    temp = target.with_name(f".{target.name}.tmp-{secrets.token_hex(4)}")
    try:
        with open(temp, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temp, target)
    finally:
        temp.unlink(missing_ok=True)


# --------------------------------------------------------------------------- splits


def split_validation(x: np.ndarray, y: np.ndarray, size: int = 5000, seed: int = 0):
    """(x_train, y_train, x_val, y_val): a seeded random `size` examples held out from training.

    Progress reports use the validation part; the test set stays for the final accuracy only.
    """
    if len(x) != len(y):
        raise ValueError(f"x has {len(x)} rows but y has {len(y)}")
    if not 0 < size < len(x):
        raise ValueError(f"validation size must be between 1 and {len(x) - 1}, got {size}")
    order = np.random.default_rng(seed).permutation(len(x))
    val, train = order[:size], order[size:]
    return x[train], y[train], x[val], y[val]
