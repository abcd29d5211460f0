"""The served version of each model, opened for explaining: its graph read once, run with its
intermediate values exposed.

`ServedGraphs.get(name)` returns the `ServedGraph` of the export the predictor serves now. Like
inference/predictor.py it asks where that file is (a version switch names another file) and stats
it on every call ((path, mtime_ns, size, inode): a few microseconds), and reopens it when a
training, a fine-tune or a version switch changed it, so the maps always follow the served version. Opening one takes a few tens of milliseconds (parse,
analyse, build a session with extra outputs); it happens once per version, not per request.

The session runs the served graph unchanged, only with more outputs: the values the explainer
reads (logits, the linear head's features, every value on the differentiable path, each layer's
activations). onnxruntime computes them anyway; exposing them only keeps them from being freed,
but it also keeps onnxruntime from fusing the operations around them (a conv with its ReLU, ...):
the many forward passes of RISE, occlusion and the deletion curves, which need only the scores, go
through a second session exposing the logits alone. Measured, 256 images in one thread: Model 3
75.8 -> 41.7 ms, Model 2 30.8 -> 13.1 ms, the same scores (within 4e-8).
"""
from __future__ import annotations

import threading
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np
import onnxruntime as ort

from inference.explain.graph import GraphInfo, analyse
from inference.predictor import NO_EXPORT_REASON, ModelUnavailableError, file_signature, session_options
from training.onnx_contract import INPUT_NAME, NUM_CLASSES, OUTPUT_NAME

LOG_FLOOR = 1e-12  # as training/calibration.LOG_FLOOR: the score of a model without logits is log(max(p, floor))


@dataclass
class ServedGraph:
    """One loaded version of one model: what its graph allows, and a session exposing its values."""

    name: str
    signature: tuple  # (path, (mtime_ns, size, inode)) of the file it was opened from
    info: GraphInfo
    session: ort.InferenceSession
    outputs: list[str]  # OUTPUT_NAME first, then info.values_to_expose()
    scoring: ort.InferenceSession | None = field(default=None, repr=False)  # the graph with only its scores exposed
    source: bytes = field(default=b"", repr=False)  # the export's bytes as served (the sanity check copies them)
    metadata: dict[str, Any] = field(default_factory=dict)  # the export's metadata_props (its version, ...)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _cache: dict[str, Any] = field(default_factory=dict, repr=False)

    def run(self, batch: np.ndarray, names: list[str] | None = None) -> dict[str, np.ndarray]:
        """Every exposed value (or only `names`) for images [N, 28, 28, 1]; "image" is the batch itself."""
        wanted = self.outputs if names is None else [name for name in names if name != INPUT_NAME]
        values = dict(zip(wanted, self.session.run(wanted, {INPUT_NAME: batch})))
        values[INPUT_NAME] = batch
        return values

    def scores(self, values: Mapping[str, np.ndarray]) -> np.ndarray:
        """The scores the maps explain, float64 [N, 10]: softmax(scores) = the served probabilities."""
        if self.info.logits is not None:
            return np.asarray(values[self.info.logits], np.float64).reshape(-1, NUM_CLASSES) * self.info.inverse_temperature
        return np.log(np.maximum(np.asarray(values[OUTPUT_NAME], np.float64), LOG_FLOOR))

    def score_batch(self, batch: np.ndarray) -> np.ndarray:
        """scores() of a batch, running only what they need (occlusion, deletion curves)."""
        name = self.info.logits or OUTPUT_NAME
        if self.scoring is None:
            return self.scores(self.run(batch, [name]))
        return self.scores({name: self.scoring.run([name], {INPUT_NAME: batch})[0]})

    def cached(self, key: str, compute):
        """A value computed once per loaded version (weight images, say), thread-safe."""
        with self._lock:
            if key not in self._cache:
                self._cache[key] = compute()
            return self._cache[key]

    @cached_property
    def version(self) -> int | None:
        version = self.metadata.get("version")
        return version if isinstance(version, int) else None


def open_graph(name: str, data: bytes, signature: tuple = ()) -> ServedGraph:
    """A ServedGraph from an ONNX model's bytes: analysed, and run with its values exposed."""
    import onnx

    from inference.predictor import decode_metadata_props

    model = onnx.load_from_string(data)
    info = analyse(model)
    outputs = [OUTPUT_NAME, *info.values_to_expose()]
    declared = {value.name for value in model.graph.output}
    scoring = None
    if info.logits is not None and info.logits not in declared:
        scored = onnx.load_from_string(data)
        scored.graph.output.extend([onnx.ValueInfoProto(name=info.logits)])
        scoring = ort.InferenceSession(scored.SerializeToString(), sess_options=session_options(),
                                       providers=["CPUExecutionProvider"])
    # A name alone is enough: onnxruntime infers the type of an intermediate value it exposes.
    model.graph.output.extend(onnx.ValueInfoProto(name=value) for value in outputs if value not in declared)
    session = ort.InferenceSession(model.SerializeToString(), sess_options=session_options(),
                                   providers=["CPUExecutionProvider"])
    metadata = decode_metadata_props({prop.key: prop.value for prop in model.metadata_props})
    return ServedGraph(name=name, signature=signature, info=info, session=session, outputs=outputs,
                       metadata=metadata, source=data, scoring=scoring)


OnnxLocation = Path | Callable[[], Path]  # a file, or where the served file is now (a version switch moves it)


class ServedGraphs:
    """The ServedGraph of each model's current export (see the module docstring); thread-safe."""

    def __init__(self, onnx_paths: Mapping[str, OnnxLocation], pinned: Mapping[str, ServedGraph] | None = None):
        self._paths = dict(onnx_paths)
        self._graphs: dict[str, ServedGraph] = {}
        self._locks = {name: threading.Lock() for name in self._paths}
        # Graphs that are no file's (the sanity check's randomised copies): served as they are.
        self._pinned = dict(pinned or {})

    @property
    def names(self) -> list[str]:
        return [*self._paths, *(name for name in self._pinned if name not in self._paths)]

    def get(self, name: str) -> ServedGraph:
        """The served version of `name`; ModelUnavailableError when it has no valid export; KeyError when unknown."""
        if name in self._pinned:
            return self._pinned[name]
        location = self._paths[name]
        path = location() if callable(location) else location
        signature = (path, file_signature(path))
        current = self._graphs.get(name)
        if current is not None and current.signature == signature:
            return current
        with self._locks[name]:
            current = self._graphs.get(name)
            signature = (path, file_signature(path))
            if current is not None and current.signature == signature:
                return current
            if signature[1] is None:
                raise ModelUnavailableError(name, NO_EXPORT_REASON)
            try:
                loaded = open_graph(name, path.read_bytes(), signature)
            except Exception as error:  # onnx and onnxruntime raise their own types for a broken file
                raise ModelUnavailableError(name, f"its export cannot be explained ({type(error).__name__}: "
                                                  f"{str(error).strip()[:200]})") from None
            self._graphs[name] = loaded
            return loaded
