"""Per-image latency of each shipped ONNX model in ONE onnxruntime thread (issue 21's "<= 1 ms per
image in one onnxruntime thread" for Model 3).

    python -m benchmarks.speed.one_thread [exports/model3.onnx ...]   # default: every registered model

50 warm-up calls, then 1,000 single MNIST test images (MNIST_DIR) one call each: p50 and p95;
then one batch of 2,000 (per image). Prints one line per model.
"""
from __future__ import annotations

import sys
import time

import numpy as np


def main(argv: list[str] | None = None) -> int:
    import onnxruntime as ort

    from training.artifacts import DEFAULT_EXPORTS_DIR
    from training.mnist import load_mnist
    from training.onnx_contract import INPUT_NAME
    from training.registry import MODELS

    paths = (argv if argv is not None else sys.argv[1:]) or [str(DEFAULT_EXPORTS_DIR / f"{name}.onnx") for name in MODELS]
    options = ort.SessionOptions()
    options.intra_op_num_threads = options.inter_op_num_threads = 1
    images = (load_mnist().x_test[:2000].astype(np.float32) / 255.0)[..., None]
    for path in paths:
        session = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
        for index in range(50):
            session.run(None, {INPUT_NAME: images[index:index + 1]})
        times = []
        for index in range(1000):
            began = time.perf_counter()
            session.run(None, {INPUT_NAME: images[index:index + 1]})
            times.append(time.perf_counter() - began)
        began = time.perf_counter()
        session.run(None, {INPUT_NAME: images})
        batch = (time.perf_counter() - began) / len(images)
        print(f"{path}: one image p50 {1000 * np.median(times):.3f} ms, p95 {1000 * np.percentile(times, 95):.3f} ms; "
              f"batch of {len(images)}: {1000 * batch:.3f} ms per image")
    return 0


if __name__ == "__main__":
    sys.exit(main())
