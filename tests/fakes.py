"""Test doubles: tiny contract-following ONNX models, and scripted registry trainers.

Tiny models are for tests that need "a model" but not a good one.

`write_tiny_model` builds image -> Reshape -> MatMul -> Add -> Softmax with onnx.helper and
writes it through the real `training.export.save_model` (finalize, parity, atomic write),
so the files look exactly like a trainer's: <name>.onnx, <name>.<native>, <name>.json.
With `digit=k` the model always answers k (handy to see a hot reload take effect);
otherwise its answer depends on the image (seeded random weights).
"""
from __future__ import annotations

import io
import sys
import threading
import types
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper
from PIL import Image, ImageDraw

from training.events import Progress, Result
from training.export import save_model
from training.onnx_contract import INPUT_NAME, OPSET, OUTPUT_NAME
from training.options import TrainOptions
from training.registry import MODELS, ModelSpec


def tiny_weights(digit: int | None = None, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    if digit is not None:
        weights = np.zeros((784, 10), np.float32)
        bias = np.zeros(10, np.float32)
        bias[digit] = 8.0  # softmax ~0.997 for `digit`, whatever the image
        return weights, bias
    rng = np.random.default_rng(seed)
    return rng.normal(0, 0.05, (784, 10)).astype(np.float32), rng.normal(0, 0.1, 10).astype(np.float32)


def tiny_onnx(weights: np.ndarray, bias: np.ndarray, *, input_name: str = INPUT_NAME,
              output_name: str = OUTPUT_NAME) -> onnx.ModelProto:
    """The bare graph (no metadata); named by the contract unless told otherwise."""
    graph = helper.make_graph(
        nodes=[
            helper.make_node("Reshape", [input_name, "flat_shape"], ["flat"]),
            helper.make_node("MatMul", ["flat", "W"], ["logits_raw"]),
            helper.make_node("Add", ["logits_raw", "b"], ["logits"]),
            helper.make_node("Softmax", ["logits"], [output_name], axis=1),
        ],
        name="tiny",
        inputs=[helper.make_tensor_value_info(input_name, TensorProto.FLOAT, ["N", 28, 28, 1])],
        outputs=[helper.make_tensor_value_info(output_name, TensorProto.FLOAT, ["N", 10])],
        initializer=[
            numpy_helper.from_array(np.array([-1, 784], np.int64), "flat_shape"),
            numpy_helper.from_array(weights, "W"),
            numpy_helper.from_array(bias, "b"),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
    model.ir_version = 8
    return model


def tiny_predict(weights: np.ndarray, bias: np.ndarray, images: np.ndarray) -> np.ndarray:
    logits = images.reshape(len(images), -1).astype(np.float64) @ weights + bias
    logits -= logits.max(axis=1, keepdims=True)
    exp = np.exp(logits)
    return exp / exp.sum(axis=1, keepdims=True)


def load_tiny_native(path) -> Any:
    """The .npz native file written below, loaded back: images -> probabilities."""
    with np.load(path) as saved:
        weights, bias = saved["weights"], saved["bias"]
    return lambda images: tiny_predict(weights, bias, images)


def write_tiny_model(folder: Any, name: str = "model1", *, digit: int | None = None, seed: int = 0,
                     accuracy: float = 0.5, metadata: dict[str, Any] | None = None) -> dict[str, str]:
    """Write a contract-following model for `name` into `folder` (or, given a ModelVersions, as its
    newest version); returns the written paths."""
    weights, bias = tiny_weights(digit, seed)
    images = np.random.default_rng(seed).random((16, 28, 28, 1), dtype=np.float32)
    paths, _ = save_model(
        name=name,
        write_native=lambda path: np.savez(open(path, "wb"), weights=weights, bias=bias),
        onnx_model=tiny_onnx(weights, bias),
        probabilities_output=OUTPUT_NAME,
        native_predict=lambda x: tiny_predict(weights, bias, x),
        load_native=load_tiny_native,
        parity_images=images,
        test_set=(images, np.arange(len(images)) % 10),  # a few images: enough for the card's figures
        metadata={"test_accuracy": accuracy, "train_seconds": 0.01, "options": {"fixture": True},
                  **(metadata or {})},
        exports_dir=folder,
    )
    return paths


class FakeTrainer:
    """A registry entry whose trainer is scripted by the test, and records what happened.

    `script(options)` returns the events to yield (a generator or an iterable). The
    fake module is registered in sys.modules through `monkeypatch`, so it disappears
    after the test.
    """

    def __init__(self, monkeypatch, name: str = "fake", *, requires: tuple[str, ...] = (),
                 native_format: str = "joblib", supports: tuple[str, ...] = ()):
        self.module_name = f"_fake_trainer_{name}_{id(self)}"
        module = types.ModuleType(self.module_name)
        module.train = self.train
        module.DEFAULTS = TrainOptions(epochs=3)
        module.QUICK = TrainOptions(epochs=1, limit=1000)
        monkeypatch.setitem(sys.modules, self.module_name, module)
        # The job manager's MNIST pre-check passes when downloads are allowed; a fake
        # trainer never loads data, so its tests must not depend on MNIST_DOWNLOAD.
        monkeypatch.delenv("MNIST_DOWNLOAD", raising=False)
        self.spec = ModelSpec(name=name, title=f"Fake {name}", description="scripted trainer",
                              module=self.module_name, native_format=native_format, requires=requires,
                              supports=supports)
        self.script: Callable[[TrainOptions], Any] = lambda options: iter([fake_result(name)])
        self.received_options: list[TrainOptions] = []
        self.received_exports_dirs: list[Any] = []
        self.exited_early = threading.Event()  # GeneratorExit reached the trainer
        self.wrote_files = threading.Event()

    def train(self, options=None, *, data=None, exports_dir=None) -> Iterator[Progress | Result]:
        self.received_options.append(options)
        self.received_exports_dirs.append(exports_dir)
        try:
            yield from self.script(options)
        except GeneratorExit:
            self.exited_early.set()
            raise


def fake_result(model: str = "fake", accuracy: float = 0.9) -> Result:
    return Result(model=model, test_accuracy=accuracy, train_seconds=1.5, paths={"onnx": f"{model}.onnx"},
                  metadata={"test_accuracy": accuracy})


def fake_progress(step: int, of: int = 3) -> Progress:
    return Progress(progress=100 * step / of, status=f"Epoch {step}/{of}", epoch=step, epochs=of,
                    accuracy=0.5 + step / 10)


def sample_drawings() -> list[bytes]:
    """A few different 280x280 PNG drawings, so a mixed-up response would be noticed."""
    strokes = [[(70, 60), (210, 60), (120, 230)], [(140, 40), (140, 240)],
               [(80, 80), (200, 80), (80, 220), (200, 220)], [(90, 60), (190, 140), (90, 230)]]
    images = []
    for index, stroke in enumerate(strokes):
        mode, background, ink = (("RGBA", (0, 0, 0, 0), (0, 0, 0, 255)) if index % 2 else ("L", 255, 0))
        image = Image.new(mode, (280, 280), background)
        ImageDraw.Draw(image).line(stroke, fill=ink, width=14 + 6 * index)
        buffer = io.BytesIO()
        image.save(buffer, format="PNG")
        images.append(buffer.getvalue())
    return images


def in_parallel(work: Callable[[int], Any], count: int) -> list[Exception]:
    """Run work(0), ..., work(count - 1) in `count` threads at once; returns what they raised (the
    assertion names it)."""
    errors: list[Exception] = []

    def run(index: int) -> None:
        try:
            work(index)
        except Exception as error:  # noqa: BLE001 - collected and returned
            errors.append(error)

    threads = [threading.Thread(target=run, args=(index,)) for index in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return errors


def slow_render(task):
    """A render function for training.strokes.iter_render's workers that takes a minute (a worker busy)."""
    import time

    time.sleep(60)
    return task
