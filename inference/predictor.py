"""One onnxruntime predictor over every exported model in the registry.

Each model's `<name>.onnx` (see training/onnx_contract.py) gets one CPU
InferenceSession, created once and shared by all threads (onnxruntime's `run`
is thread-safe). Sessions are tuned for one image at a time: a single intra-op
thread and sequential execution, because a 28x28 image is too small for
parallelism to pay for its synchronisation, and request-level concurrency
already uses the cores.

Where the models come from: a source with `serving_files(name)`. In the app that is
training/model_versions.ModelVersions (the serving version in DATA_DIR, else the
shipped exports/); a plain folder (tests, benchmarks) is served as it is
(training/artifacts.ExportFolder).

Hot reload: every call asks the source which files serve (for the versions, one stat
of serving.json while it is unchanged) and stats the ONNX file (a few microseconds),
comparing (path, mtime_ns, size, inode) with what is loaded; a new version is a new
path and a replaced file a new inode, so a change always shows up, whichever process
made it. The new session is built beside the old one and swapped in under a lock;
requests already running keep the old session object until they finish.

A missing or broken export makes only that model unavailable, with a reason a
user can act on; the other models keep serving. Never imports TensorFlow.

Verdicts: a model whose registry entry names a `second_opinion` (Model 1: Model 3) also
runs that model on the same image and takes the more doubtful of the two verdicts
(inference/verdict.with_second_opinion); if that model cannot predict, its own alone.
"""
from __future__ import annotations

import datetime as _dt
import json
import logging
import os
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import onnxruntime as ort

from inference.verdict import judge, judge_many, thresholds_from, with_second_opinion
from training.artifacts import ExportFolder, ServingFiles, read_metadata
from training.onnx_contract import IMAGE_SHAPE, INPUT_NAME, NUM_CLASSES, OUTPUT_NAME
from training.registry import MODELS, ModelSpec

log = logging.getLogger(__name__)

NO_EXPORT_REASON = "no export yet: train it"


class ModelUnavailableError(RuntimeError):
    """The model cannot predict right now; `reason` says why and what to do."""

    def __init__(self, name: str, reason: str):
        super().__init__(f"{name} is unavailable: {reason}")
        self.name = name
        self.reason = reason


@dataclass(frozen=True)
class Prediction:
    model: str
    digit: int
    probabilities: list[float]  # 10 floats summing to 1 (calibrated, when the export is)
    latency_ms: float  # time inside the predictor (validation + onnxruntime)
    # "digit", "unsure" or "not_a_digit" (inference/verdict.py, thresholds from the export's metadata)
    verdict: str = "digit"
    candidates: list[int] = field(default_factory=list)  # [digit]; [top, second] when unsure; [] for not_a_digit

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class _Loaded:
    """What is being served for one model: replaced as a whole, never mutated."""

    signature: tuple | None  # (path, (mtime_ns, size, inode)) of the file it came from
    files: ServingFiles | None = None  # the files it came from (their version and paths)
    session: ort.InferenceSession | None = None
    reason: str | None = None  # why there is no session
    onnx_metadata: dict[str, Any] = field(default_factory=dict)  # the export's metadata_props
    verdict_thresholds: dict[str, float] = field(default_factory=lambda: thresholds_from(None))
    loaded_at: str | None = None  # ISO time (UTC) the session was built


def session_options() -> ort.SessionOptions:
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    # Spinning threads would burn the shared cores between requests.
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return options


def file_signature(path: Path) -> tuple[int, int, int] | None:
    """(mtime_ns, size, inode) of a file, or None when it is missing: changes whenever an export is replaced."""
    try:
        stat = os.stat(path)
    except OSError:
        return None
    return (stat.st_mtime_ns, stat.st_size, stat.st_ino)


def decode_metadata_props(props: Mapping[str, str]) -> dict[str, Any]:
    decoded = {}
    for key, value in props.items():
        try:
            decoded[key] = json.loads(value)
        except ValueError:
            decoded[key] = value
    return decoded


class Predictor:
    """Serves every registry model from its ONNX export; safe to share between threads."""

    def __init__(self, source: Any = None, models: Mapping[str, ModelSpec] | None = None):
        """`source`: a ModelVersions (what the app serves), or a folder of exports served as it is
        (default: $EXPORTS_DIR, the shipped models)."""
        self.models: dict[str, ModelSpec] = dict(models if models is not None else MODELS)
        self.source = source if hasattr(source, "serving_files") else ExportFolder(source, self.models)
        self.exports_dir: Path = self.source.shipped_dir  # the shipped models (version 1)
        self._options = session_options()
        self._loaded: dict[str, _Loaded] = {}
        self._locks = {name: threading.Lock() for name in self.models}
        for name in self.models:
            self._refresh(name)

    @property
    def names(self) -> list[str]:
        return list(self.models)

    def paths(self, name: str) -> dict[str, Path]:
        """The files `name` serves from now ("native", "onnx", "metadata")."""
        self._spec(name)
        return self.source.serving_files(name).paths

    # -- prediction -------------------------------------------------------

    def predict(self, x: np.ndarray, model: str) -> Prediction:
        """Classify one preprocessed image: float32 [28, 28, 1] (or [1, 28, 28, 1]) in [0, 1]."""
        start = time.perf_counter()
        batch = _as_batch(x)
        if batch.shape[0] != 1:
            raise ValueError(f"predict() takes one image, got a batch of {batch.shape[0]}; use predict_batch()")
        probabilities, thresholds = self._run(model, batch)
        second = self._second_opinion(model, batch)
        return _prediction(model, probabilities[0], _elapsed_ms(start), thresholds, second[0] if second else None)

    def predict_batch(self, x: np.ndarray, model: str) -> list[Prediction]:
        """Classify a batch [N, 28, 28, 1]; each Prediction carries the batch's latency."""
        start = time.perf_counter()
        batch = _as_batch(x)
        rows, thresholds = self._run(model, batch)
        second = self._second_opinion(model, batch) or [None] * len(rows)
        latency_ms = _elapsed_ms(start)
        return [_prediction(model, row, latency_ms, thresholds, other) for row, other in zip(rows, second)]

    def predict_digits(self, x: np.ndarray, model: str) -> np.ndarray:
        """The top digit of each image of a batch [N, 28, 28, 1], int64 [N]: for accuracy counts, which
        need neither verdicts nor a second opinion (confusion matrices, held-out drawings)."""
        probabilities, _ = self._run(model, _as_batch(x))
        return np.argmax(probabilities, axis=1)

    def predict_all(self, x: np.ndarray) -> dict[str, Prediction]:
        """The same image through every available model (unavailable ones are left out)."""
        batch = _as_batch(x)
        runs = {}
        for name in self.models:
            start = time.perf_counter()
            try:
                probabilities, thresholds = self._run(name, batch)
            except ModelUnavailableError:
                continue
            # Each model's latency is its own run's, not the other models'.
            runs[name] = (probabilities[0], thresholds, _elapsed_ms(start))
        own = {name: judge(probabilities, thresholds)[0] for name, (probabilities, thresholds, _) in runs.items()}
        # A partner's own verdict (never its second-opinion one: no chains), already computed.
        return {name: _prediction(name, probabilities, latency_ms, thresholds, own.get(self.models[name].second_opinion))
                for name, (probabilities, thresholds, latency_ms) in runs.items()}

    def _second_opinion(self, model: str, batch: np.ndarray) -> list[str] | None:
        """The own verdicts of the model `model` asks for a second opinion (registry), or None when it
        asks none or that model cannot predict (then the model's verdict is its own alone)."""
        partner = self.models[model].second_opinion
        if partner is None or partner not in self.models:
            return None
        try:
            probabilities, thresholds = self._run(partner, batch)
        except ModelUnavailableError:
            return None
        return judge_many(probabilities, thresholds)

    def _run(self, name: str, batch: np.ndarray) -> tuple[np.ndarray, dict[str, float]]:
        """(probabilities [N, 10], the verdict thresholds of the same export)."""
        loaded = self._current(name)
        if loaded.session is None:
            raise ModelUnavailableError(name, loaded.reason or NO_EXPORT_REASON)
        # The local reference keeps this session alive even if a reload swaps it meanwhile.
        return loaded.session.run([OUTPUT_NAME], {INPUT_NAME: batch})[0], loaded.verdict_thresholds

    # -- loading and hot reload -------------------------------------------

    def _spec(self, name: str) -> ModelSpec:
        try:
            return self.models[name]
        except KeyError:
            raise KeyError(f"unknown model {name!r}; choose one of: {', '.join(self.models)}") from None

    def _current(self, name: str) -> _Loaded:
        """The loaded state for `name`, reloading first when the export changed on disk."""
        if name not in self._locks:
            self._spec(name)  # raises KeyError naming the valid models
        loaded = self._loaded.get(name)
        signature = self._signature(self.source.serving_files(name))
        if loaded is not None and loaded.signature == signature:
            return loaded
        lock = self._locks[name]
        # While another thread builds the new session, keep serving the old one
        # instead of queueing behind the load.
        if loaded is not None and loaded.session is not None and not lock.acquire(blocking=False):
            return loaded
        if loaded is None or loaded.session is None:
            lock.acquire()
        try:
            return self._refresh_locked(name)
        finally:
            lock.release()

    def _refresh(self, name: str) -> _Loaded:
        with self._locks[name]:
            return self._refresh_locked(name)

    def _refresh_locked(self, name: str) -> _Loaded:
        files = self.source.serving_files(name)
        signature = self._signature(files)
        current = self._loaded.get(name)
        if current is not None and current.signature == signature:
            return current  # another thread reloaded it while we waited
        loaded = self._load(files, signature)
        self._loaded[name] = loaded  # a single assignment: readers see the old or the new state
        if loaded.session is not None:
            log.info("serving %s from %s", name, files.display("onnx"))
        else:
            log.warning("%s unavailable: %s", name, loaded.reason)
        return loaded

    @staticmethod
    def _signature(files: ServingFiles) -> tuple:
        path = files.paths["onnx"]  # the same Path object while the source's answer is unchanged: cheap to compare
        return (path, file_signature(path))

    def _load(self, files: ServingFiles, signature: tuple) -> _Loaded:
        path = files.paths["onnx"]
        if signature[1] is None:
            return _Loaded(signature=signature, files=files, reason=NO_EXPORT_REASON)
        shown = files.display("onnx")
        try:
            # Read the bytes first so the session never sees a file that changes under it;
            # a file replaced meanwhile has a new signature and is loaded on the next call.
            data = path.read_bytes()
            session = ort.InferenceSession(data, sess_options=self._options, providers=["CPUExecutionProvider"])
        except Exception as error:  # onnxruntime raises its own exception types for bad files
            message = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
            return _Loaded(signature=signature, files=files,
                           reason=f"{shown} is not a valid ONNX model ({message[:300]}); retrain it to replace it")
        problem = _contract_problem(session)
        if problem:
            return _Loaded(signature=signature, files=files,
                           reason=f"{shown} does not follow the ONNX contract: {problem}; retrain it to replace it")
        metadata = decode_metadata_props(session.get_modelmeta().custom_metadata_map)
        loaded_at = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
        return _Loaded(signature=signature, files=files, session=session, onnx_metadata=metadata,
                       loaded_at=loaded_at, verdict_thresholds=thresholds_from(metadata))

    def reload(self, name: str | None = None) -> None:
        """Re-read the serving files now, e.g. right after a training job wrote a new version."""
        for model in [name] if name is not None else self.models:
            self._spec(model)
            with self._locks[model]:
                files = self.source.serving_files(model)
                # Unconditional: also re-reads a file whose signature happens to look unchanged.
                self._loaded[model] = self._load(files, self._signature(files))

    # -- status -----------------------------------------------------------

    def is_available(self, name: str) -> bool:
        return self._current(name).session is not None

    def status(self) -> dict[str, dict[str, Any]]:
        return {name: self.model_status(name) for name in self.models}

    def model_status(self, name: str) -> dict[str, Any]:
        """What a user wants to know about one model: trained? serving? how good, since when."""
        spec = self._spec(name)
        loaded = self._current(name)
        files = loaded.files or self.source.serving_files(name)
        paths = files.paths
        file_sizes = {kind: path.stat().st_size for kind, path in paths.items() if path.is_file()}
        # The JSON sidecar is the trainer's full record; the ONNX metadata_props carry the
        # same keys, so a model exported without a sidecar still reports its numbers. Without
        # the ONNX file a sidecar left behind describes a model that no longer serves: unread.
        metadata = {**loaded.onnx_metadata, **(read_metadata(paths["metadata"]) or {})} if "onnx" in file_sizes else {}
        return {
            "name": name,
            "title": spec.title,
            "description": spec.description,
            "trained": "onnx" in file_sizes,
            "available": loaded.session is not None,
            "reason": loaded.reason,
            "accuracy": _first(metadata, "test_accuracy", "accuracy"),
            "trained_at": metadata.get("trained_at"),
            "train_seconds": _first(metadata, "train_seconds"),
            "data_seconds": metadata.get("data_seconds"),  # preparing the training data, apart from training
            "onnx_parity": metadata.get("onnx_parity"),
            # The native file as loaded back vs the ONNX file (training/native_calibration.py).
            "native_parity": metadata.get("native_parity"),
            "calibration": metadata.get("calibration"),
            "drawn_digits": metadata.get("drawn_digits"),
            "verdict_thresholds": dict(loaded.verdict_thresholds),
            "second_opinion": spec.second_opinion,  # another model's verdict this one's takes into account
            "options": metadata.get("options"),
            # Its number in training/model_versions.py (a plain folder: what its metadata says, if anything).
            "version": (files.version if files.version is not None else metadata.get("version"))
            if "onnx" in file_sizes else None,
            "drawings_accuracy": metadata.get("drawings_accuracy"),  # on the held-out corrections (issue 12)
            "file_sizes": file_sizes,
            "loaded_at": loaded.loaded_at,
        }


def _first(mapping: Mapping[str, Any], *keys: str) -> Any:
    for key in keys:
        if mapping.get(key) is not None:
            return mapping[key]
    return None


def _contract_problem(session: ort.InferenceSession) -> str | None:
    """Why this session does not follow the ONNX contract, or None; runs one warm-up inference."""
    inputs = [value.name for value in session.get_inputs()]
    outputs = [value.name for value in session.get_outputs()]
    if INPUT_NAME not in inputs or len(inputs) != 1:
        return f"expected one input named {INPUT_NAME!r}, found {inputs}"
    if OUTPUT_NAME not in outputs:
        return f"expected an output named {OUTPUT_NAME!r}, found {outputs}"
    try:
        # The first run allocates buffers; doing it here keeps it off the first request.
        probabilities = session.run([OUTPUT_NAME], {INPUT_NAME: np.zeros((1, *IMAGE_SHAPE), np.float32)})[0]
    except Exception as error:
        return f"it fails on a blank [1, 28, 28, 1] image ({str(error).strip()[:200]})"
    if probabilities.shape != (1, NUM_CLASSES):
        return f"expected probabilities of shape [1, {NUM_CLASSES}], got {list(probabilities.shape)}"
    return None


def _as_batch(x: np.ndarray) -> np.ndarray:
    array = np.asarray(x)
    if array.shape == IMAGE_SHAPE:
        array = array[np.newaxis]
    if array.ndim != 4 or array.shape[1:] != IMAGE_SHAPE:
        raise ValueError(f"expected a preprocessed image of shape [28, 28, 1] or [N, 28, 28, 1], "
                         f"got {list(array.shape)}; pass it through inference.preprocess.preprocess() first")
    return np.ascontiguousarray(array, dtype=np.float32)


def _elapsed_ms(start: float) -> float:
    return (time.perf_counter() - start) * 1000.0


def _prediction(model: str, probabilities: np.ndarray, latency_ms: float, thresholds: Mapping[str, float],
                second_opinion: str | None = None) -> Prediction:
    values = [float(p) for p in probabilities]
    verdict, candidates = with_second_opinion(judge(values, thresholds), values, second_opinion)
    return Prediction(
        model=model,
        digit=int(np.argmax(probabilities)),
        probabilities=values,
        latency_ms=latency_ms,
        verdict=verdict,
        candidates=candidates,
    )
