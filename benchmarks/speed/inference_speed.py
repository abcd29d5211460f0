"""(3) Inference time per image: the project's onnxruntime Predictor vs the native models.

Native means what the original app ran: scikit-learn `predict_proba` on the
joblib model, Keras `model.predict` (and the lighter `model(x)`) on the .keras
model. TensorFlow is imported here, inside `run`, and nowhere else in the
benchmarks' own process except the training section.
"""
from __future__ import annotations

import numpy as np

from benchmarks.context import Context, as_model_input
from benchmarks.outcome import SectionResult, ratio
from benchmarks.timing import time_call

NAME = "inference"
TITLE = "Inference time per image: onnxruntime vs native"

BATCH_SIZES = (1, 64)
# Target: onnxruntime at least this many times faster than Keras model.predict, one image per call.
KERAS_PREDICT_TARGET = 20.0


def run(ctx: Context) -> SectionResult:
    from inference.predictor import Predictor

    result = SectionResult(NAME, TITLE)
    images = as_model_input(ctx.mnist.x_test[:max(BATCH_SIZES)])
    predictor = Predictor(ctx.exports)
    timings: dict[str, dict[str, dict]] = {}  # model -> engine -> "b1"/"b64" -> timing

    def measure(model: str, engine: str, batch: int, fn) -> None:
        timing = time_call(fn, repeats=ctx.config.timing_repeats, run_seconds=ctx.config.timing_run_seconds)
        timing["per_image_s"] = timing["median_s"] / batch
        timings.setdefault(model, {}).setdefault(engine, {})[f"b{batch}"] = timing
        ctx.log(f"  {model} {engine} batch {batch}: {1e6 * timing['per_image_s']:.1f} us/image")

    for model in ("model1", "model2"):
        for batch in BATCH_SIZES:
            if batch == 1:
                one = images[0]
                measure(model, "onnxruntime", 1, lambda one=one, model=model: predictor.predict(one, model))
            else:
                many = images[:batch]
                measure(model, "onnxruntime", batch,
                        lambda many=many, model=model: predictor.predict_batch(many, model))

    import joblib

    sklearn_model = joblib.load(ctx.exports / "model1.joblib")
    for batch in BATCH_SIZES:
        flat = images[:batch].reshape(batch, -1)
        measure("model1", "sklearn predict_proba", batch, lambda flat=flat: sklearn_model.predict_proba(flat))

    import keras  # imports TensorFlow: only in this section

    keras_model = keras.models.load_model(ctx.exports / "model2.keras", compile=False)
    for batch in BATCH_SIZES:
        x = images[:batch]
        measure("model2", "Keras model.predict", batch, lambda x=x: keras_model.predict(x, verbose=0))
        measure("model2", "Keras model(x)", batch, lambda x=x: np.asarray(keras_model(x, training=False)))

    result.data["timings"] = timings
    rows = []
    ratios = {}
    for model, engines in timings.items():
        ours = engines["onnxruntime"]
        for engine, by_batch in engines.items():
            for key, timing in by_batch.items():
                slower = timing["per_image_s"] / ours[key]["per_image_s"]
                target, status = "info", "info"
                if engine != "onnxruntime":
                    ratios[f"{model}/{engine}/{key}"] = slower
                if engine == "Keras model.predict" and key == "b1":
                    target = f"onnxruntime >= {KERAS_PREDICT_TARGET:.0f}x faster"
                    status = result.check("Model 2: onnxruntime vs Keras model.predict, one image", target,
                                          f"{ratio(slower)} faster", slower, slower >= KERAS_PREDICT_TARGET,
                                          why=f"Keras model.predict takes {_us(timing['per_image_s'])} per image "
                                              f"and onnxruntime {_us(ours[key]['per_image_s'])}.")
                rows.append([model, engine, key[1:], _us(timing["per_image_s"]),
                             _versus(slower) if engine != "onnxruntime" else "1.0x (reference)",
                             target, status])
    result.data["native_over_onnx"] = ratios
    result.table("Median time per image (lower is better); ratio = native time / onnxruntime time",
                 ["Model", "Engine", "Batch", "Per image", "vs onnxruntime", "Target", "Status"], rows)
    for key, speedup in ratios.items():
        if speedup < 1:
            result.note(f"{key}: the native engine is faster than onnxruntime ({speedup:.2f}x); the Predictor "
                        f"is tuned for one image at a time (one intra-op thread).")
    result.plots.append("inference_speed.png")
    return result


def _versus(slower: float) -> str:
    return f"{ratio(slower)} slower" if slower >= 1 else f"{ratio(1 / slower)} faster"


def _us(seconds: float) -> str:
    micro = seconds * 1e6
    return f"{micro / 1000:.2f} ms" if micro >= 1000 else f"{micro:.1f} us"
