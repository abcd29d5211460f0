"""What every section gets: the run's size, where to write, the shipped models, MNIST, a request body."""
from __future__ import annotations

import base64
import io
import json
import shutil
import sys
import tempfile
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import numpy as np

from benchmarks.config import BenchConfig
from training.artifacts import exports_dir
from training.onnx_contract import to_model_input

# The MNIST test digit drawn into every /predict request (a "7").
REQUEST_DIGIT_INDEX = 0


@dataclass
class Context:
    config: BenchConfig
    out: Path  # results.md, results.json and plots go here
    exports: Path = field(default_factory=exports_dir)  # the shipped models: read, never written

    @cached_property
    def work(self) -> Path:
        """Scratch space (server logs, temporary exports) in the system's temp folder, removed at the end."""
        return Path(tempfile.mkdtemp(prefix="digit-studio-benchmarks-"))

    def cleanup(self) -> None:
        if "work" in self.__dict__:
            shutil.rmtree(self.work, ignore_errors=True)

    def log(self, message: str) -> None:
        print(f"[benchmarks] {message}", file=sys.stderr, flush=True)

    @cached_property
    def mnist(self):
        from training.mnist import load_mnist

        return load_mnist()

    def exports_copy(self, label: str) -> Path:
        """A private copy of the shipped models for a server or trainer that may overwrite them."""
        folder = Path(tempfile.mkdtemp(prefix=f"exports-{label}-", dir=self.work))
        for path in self.exports.glob("*"):
            if path.is_file() and not path.name.startswith("."):
                shutil.copy2(path, folder / path.name)
        return folder

    def predict_body(self, model: str = "model2") -> bytes:
        """A /predict request as a browser canvas sends it: a 280x280 RGBA PNG, black ink on white."""
        return json.dumps({"image": self.request_image_data_url, "model": model}).encode()

    @property
    def request_label(self) -> int:
        return int(self.mnist.y_test[REQUEST_DIGIT_INDEX])

    @cached_property
    def request_image_data_url(self) -> str:
        from PIL import Image

        digit = np.asarray(self.mnist.x_test[REQUEST_DIGIT_INDEX])
        ink = Image.fromarray(digit).resize((280, 280), Image.Resampling.BILINEAR)
        canvas = Image.new("RGBA", (280, 280), (255, 255, 255, 255))
        canvas.paste((0, 0, 0, 255), None, ink)  # the digit's intensity as the ink's coverage
        buffer = io.BytesIO()
        canvas.save(buffer, format="PNG")
        return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


def onnx_session(path: Path):
    """An onnxruntime CPU session for bulk scoring (batch throughput, not single-image latency)."""
    import onnxruntime as ort

    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def onnx_probabilities(session, images: np.ndarray, batch: int = 1000) -> np.ndarray:
    """Probabilities [N, 10] for images [N, 28, 28, 1] float32 in [0, 1], scored in batches."""
    from training.onnx_contract import INPUT_NAME, OUTPUT_NAME

    parts = [session.run([OUTPUT_NAME], {INPUT_NAME: images[start:start + batch].astype(np.float32)})[0]
             for start in range(0, len(images), batch)]
    return np.concatenate(parts) if parts else np.zeros((0, 10), np.float32)


as_model_input = to_model_input  # uint8 digits [N, 28, 28] -> the ONNX contract's float32 [N, 28, 28, 1]
