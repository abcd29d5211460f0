"""The Keras training loop Model 2 and Model 3 share (one generator contract, one export path).

    for event in keras_training.train(recipe, options, data=..., exports_dir=...): ...

A model module (training/model2_cnn.py, training/model3_cnn.py) describes its network in a
KerasRecipe (name, title, build_model, defaults, architecture text) and its train() calls
train(recipe, ...). Everything else is the same for every Keras model, and was Model 2's
trainer before Model 3 existed (issue 21): the canvas mix (training/canvas_data.py) with
non-digits trained towards a uniform output (outlier exposure), augmentation
(training/augment.py) in a tf.data pipeline, Adam with linear warm-up then cosine decay,
`fit` in a worker thread bridged to this generator (training/keras_bridge.py: live
progress, exceptions reach the caller, closing the generator cancels `fit` at the next batch
and writes nothing), temperature calibration and verdict thresholds on the validation split
(training/calibration.py), ONNX via Keras' own export (tf2onnx.convert.from_keras fails on
Keras 3 models), personal runs (training/personal.py: drawings, fine-tune) and the atomic save
with parity and test results (training/export.py, training/evaluation.py).

TensorFlow is imported inside functions only: importing this module stays cheap.
"""
from __future__ import annotations

import contextlib
import os
import tempfile
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np

from training.augment import Augmentation
from training.events import Progress, Result
from training.onnx_contract import to_model_input
from training.options import TrainOptions, resolve_options
from training.personal import PersonalRun

WARMUP_SHARE = 0.2  # share of all steps spent warming the step size up from learning_rate / 10
REPORT_EVERY = 20  # training batches between two progress events
PREDICT_BATCH = 1000  # images per step when evaluating
# The input pipeline's fixed parallelism (tf.data's autotuning is off: without_autotune): the
# shuffled batches are scaled and augmented by this many threads, a few batches ahead of training.
DATA_THREADS = max(2, min(8, os.cpu_count() or 2))
PREFETCH_BATCHES = 4
AVERAGE_SHARE = 0.15  # weight averaging's horizon, as a share of all steps (a ~1,100-step window in a full Model 3 run)
# Batch normalisation's statistics are measured afresh after training on this many un-augmented
# training images: the moving averages saw only the last ~10 augmented batches (momentum 0.9)
# and, with averaged weights, belong to other weights. 20,000 (16 forward passes of 1,250)
# take ~5 s; on the Model 3 network shipped before weight averaging, MNIST test 99.41 -> 99.49% by this alone.
BATCH_NORM_IMAGES = 20_000

# Share of the progress bar per phase: import TensorFlow + prepare data, training, test + export.
_PREPARE_END, _TRAIN_END = 10.0, 95.0  # drawing the canvas data takes ~1.5 min unless cached


@dataclass(frozen=True)
class KerasRecipe:
    """What differs between two Keras models; the loop below is the rest."""
    name: str  # the registry name ("model2")
    title: str
    build_model: Callable[[], Any]  # a fresh keras.Model: input `image` [N, 28, 28, 1], softmax output [N, 10]
    defaults: TrainOptions
    architecture: str  # one line for the model card
    native_format: str = "keras"
    # Training targets of a label batch inside tf.data (a callable so a test can swap the
    # module's function: Model 2's tests make it fail to check errors in fit reach the caller).
    tf_targets: Callable[[Any], Any] | None = None
    count_parameters: bool = False  # write "parameters" into the model card's hyperparameters
    # Serve the average of the weights over the last AVERAGE_SHARE of the steps (Adam's own EMA)
    # rather than the last step's, then measure batch normalisation's statistics afresh
    # (recalibrate_batch_norm; a model without it is left as it is). Models 2 and 3: measured in their
    # modules and the README's "How it reads real drawings" and Model 3 paragraphs.
    average_weights: bool = False


def train(
    recipe: KerasRecipe,
    options: TrainOptions | dict | None = None,
    *,
    data=None,
    exports_dir=None,
    augmentation: Augmentation | None = None,
) -> Iterator[Progress | Result]:
    """Train `recipe`'s network, export it, and yield progress events; the last item is a Result.

    `data`: a training.mnist.MnistData (None loads it with load_mnist()).
    `augmentation`: the augmentation settings; None trains on the plain images.
    Closing the generator cancels the run: `fit` stops at the next batch and nothing
    is written, because all files are written together only after training and evaluation.
    """
    from training import calibration, onnx_contract
    from training.keras_bridge import stream_fit
    from training.mnist import load_mnist

    options = resolve_options(options, recipe.defaults)
    began = time.perf_counter()
    timings: dict[str, float] = {}

    yield Progress(progress=0, status="Loading TensorFlow", elapsed=0.0)
    import keras  # imports TensorFlow: seconds

    timings["import_tensorflow"] = time.perf_counter() - began
    if data is None:
        data = load_mnist()
    run = PersonalRun.start(recipe.name, recipe.native_format, options, data, exports_dir)  # issue 12: drawings, fine-tune
    options = run.options  # issue 12

    # ---- data: MNIST + canvas drawings + non-digits (training/canvas_data.py), tf.data pipeline
    prepared = time.perf_counter()
    from training.canvas_data import assemble_with_events  # here: importing the trainer stays cheap

    canvas = yield from assemble_with_events(data, options, lambda status, fraction: [
        Progress(progress=_PREPARE_END * fraction, status=status, elapsed=time.perf_counter() - began)])
    x_train, y_train = run.training_data(canvas.x_train, canvas.y_train)  # issue 12: the drawings mixed in
    dataset = training_dataset(x_train, y_train, options, augmentation, recipe.tf_targets)
    validation = validation_batches(to_model_input(canvas.x_val), targets(canvas.y_val))
    batches = -(-len(x_train) // options.batch_size)
    total_steps = options.epochs * batches

    keras.utils.set_random_seed(options.seed)  # weights and dropout; data order and augmentation have their own seeds
    model = run.serving_model()  # issue 12: fine_tune continues from the serving model
    model = recipe.build_model() if model is None else model
    compile_for_training(model, options, total_steps, average_weights=recipe.average_weights)
    timings["prepare_data"] = time.perf_counter() - prepared
    data_seconds = timings["prepare_data"]  # reported apart from the training time
    drawn = "from the cache" if canvas.summary["prepared"]["source"] == "cache" else "drawn"
    yield Progress(progress=_PREPARE_END, status=f"Training data ready in {data_seconds:.1f} s (canvas drawings "
                   f"{drawn}); training on {len(x_train):,} images ({options.epochs} epochs of {batches} batches)",
                   epochs=options.epochs, batches=batches, elapsed=time.perf_counter() - began,
                   data_seconds=data_seconds)

    # ---- training: fit in a worker thread, its callback events bridged to this generator
    def fit(callbacks):
        # Timed here, in the worker: the consumer may read the last events a little later.
        started = time.perf_counter()
        try:
            return model.fit(dataset, epochs=options.epochs, validation_data=validation,
                             callbacks=callbacks, verbose=0, shuffle=False)  # the dataset shuffles itself
        finally:
            timings["fit"] = time.perf_counter() - started

    history: list[dict[str, Any]] = []
    last_epoch_end = 0.0
    report_every = max(1, min(REPORT_EVERY, batches // 4))
    # closing(): when this generator is closed, the bridge must be closed too, which cancels fit.
    with contextlib.closing(stream_fit(fit, report_every=report_every, thread_name=f"{recipe.name}-fit")) as fit_run:
        for event in fit_run:
            yield _progress(event, options, batches, total_steps, time.perf_counter() - began)
            if event.kind == "epoch":
                history.append({"epoch": event.epoch, "seconds": round(event.elapsed - last_epoch_end, 2),
                                **{key: round(value, 5) for key, value in event.logs.items()}})
                last_epoch_end = event.elapsed
    if recipe.average_weights:
        # After fit (which has put the averaged weights in place): statistics for these weights.
        recalibrated = time.perf_counter()
        recalibrate_batch_norm(model, x_train, seed=options.seed)
        timings["fit"] += time.perf_counter() - recalibrated
    train_seconds = timings["fit"]

    # ---- calibration and verdict thresholds (validation split), test figures, ONNX export, atomic save
    yield Progress(progress=96, status="Calibrating; evaluating on the 10,000 test images and drawn sets",
                   epoch=options.epochs, epochs=options.epochs, elapsed=time.perf_counter() - began)
    evaluated = time.perf_counter()
    test_images = to_model_input(data.x_test)
    test_raw = predict(model, test_images)
    reading = calibration.calibrate(recipe.name, lambda images: predict(model, images), canvas, data, test_raw,
                                    quick=options.limit is not None)
    temperature = reading["temperature"]
    test_probabilities = calibration.temper(test_raw, temperature)
    test_accuracy = float(np.mean(test_probabilities.argmax(1) == data.y_test))
    timings["evaluate"] = time.perf_counter() - evaluated

    yield Progress(progress=98, status=f"Test accuracy {test_accuracy:.2%}; exporting", epoch=options.epochs,
                   epochs=options.epochs, elapsed=time.perf_counter() - began)
    converted = time.perf_counter()
    onnx_model, raw_output = to_onnx(model, recipe.name)
    probabilities_output = calibration.add_temperature(onnx_model, raw_output, temperature)
    onnx_accuracy = onnx_contract.accuracy(onnx_model, test_images, data.y_test)
    timings["onnx_export"] = time.perf_counter() - converted
    timings["total_before_save"] = time.perf_counter() - began

    paths, metadata = _save(recipe.name, model, temperature, onnx_model, probabilities_output, (test_images, data.y_test), {
        "title": recipe.title,
        "test_accuracy": round(test_accuracy, 6),
        "onnx_test_accuracy": round(onnx_accuracy, 6),
        "train_seconds": round(train_seconds, 3),
        "data_seconds": round(data_seconds, 3),
        "timings_seconds": {key: round(value, 3) for key, value in timings.items()},
        "options": options.to_dict(),
        "hyperparameters": {
            "architecture": recipe.architecture,
            **({"parameters": model.count_params()} if recipe.count_parameters else {}),
            "optimizer": "Adam",
            "schedule": f"linear warm-up from learning_rate/10 over {WARMUP_SHARE:.0%} of the steps, "
                        "then cosine decay to 0",
            "augmentation": augmentation.to_dict() if augmentation else None,
            **({"weights": averaged_weights_text(model)} if recipe.average_weights else {}),
            "loss": "categorical cross-entropy; non-digits target the uniform distribution (outlier exposure)",
        },
        **reading,
        "history": history,
        "data": {"source": data.source, "sha256": data.sha256,
                 "official_mnist": bool(getattr(data, "is_official", False)),
                 "train_images": int(len(x_train)), "validation_images": int(len(canvas.x_val)),
                 "test_images": int(len(data.x_test)), "canvas": canvas.summary},
        "machine": _machine(),
        "native_input": "float32 [N, 28, 28, 1] in [0, 1] (white digit on black), as the ONNX input",
        **run.report(onnx_model, test_accuracy),  # issue 12: before/after on MNIST test and held-out drawings
    }, exports_dir)
    yield Progress(progress=100, status=f"Done: test accuracy {test_accuracy:.2%} in {train_seconds:.1f} s of "
                   f"training (and {data_seconds:.1f} s preparing the data, {timings['evaluate']:.1f} s evaluating)",
                   epoch=options.epochs, epochs=options.epochs,
                   val_accuracy=history[-1].get("val_accuracy") if history else None,
                   elapsed=time.perf_counter() - began, data_seconds=data_seconds)
    yield Result(model=recipe.name, test_accuracy=test_accuracy, train_seconds=train_seconds, paths=paths,
                 metadata=metadata, data_seconds=data_seconds)


# --------------------------------------------------------------------------- model pieces


def compile_for_training(model, options: TrainOptions, total_steps: int, average_weights: bool = False) -> None:
    """Adam on learning_rate_schedule(), categorical cross-entropy on the soft targets (one-hot for
    digits, uniform for non-digits: outlier exposure). `average_weights`: Adam keeps an exponential
    moving average of the weights over the last ~AVERAGE_SHARE of the steps, and fit() ends by
    putting it in place of the weights."""
    import keras

    averaging = {}
    if average_weights:
        # Tied to the run's length: a fine-tune of a few hundred steps averages over its own last
        # steps instead of dragging the served weights along (Keras starts the average at step 1).
        averaging = {"use_ema": True, "ema_momentum": 1.0 - 1.0 / max(1.0, AVERAGE_SHARE * total_steps)}
    model.compile(optimizer=keras.optimizers.Adam(learning_rate_schedule(options, total_steps), **averaging),
                  loss="categorical_crossentropy", metrics=[keras.metrics.CategoricalAccuracy(name="accuracy")])


def averaged_weights_text(model) -> str:
    """The model card's line on how the served weights were made (batch normalisation only if it has any)."""
    import keras

    text = f"exponential moving average over the last {AVERAGE_SHARE:.0%} of the steps"
    if any(isinstance(layer, keras.layers.BatchNormalization) for layer in model.layers):
        text += f"; batch normalisation statistics measured afresh on {BATCH_NORM_IMAGES:,} un-augmented training images"
    return text


def recalibrate_batch_norm(model, images: np.ndarray, *, seed: int, count: int = BATCH_NORM_IMAGES,
                           batch: int = 1250) -> None:
    """Measure every BatchNormalization layer's moving mean and variance afresh: the average over
    `count` un-augmented `images` (uint8 [N, 28, 28]) in forward passes in training mode, as
    PyTorch's swa_utils.update_bn does. A model without batch normalisation is left as it is."""
    import keras
    import tensorflow as tf

    layers = [layer for layer in model.layers if isinstance(layer, keras.layers.BatchNormalization)]
    if not layers or len(images) == 0:
        return
    chosen = np.random.default_rng(seed).permutation(len(images))[:count]
    momenta = [layer.momentum for layer in layers]
    try:
        for step, start in enumerate(range(0, len(chosen), batch)):
            # moving = momentum * moving + (1 - momentum) * batch's: with momentum k / (k + 1) at the
            # k-th pass the moving value is the plain mean of all passes so far.
            for layer in layers:
                layer.momentum = step / (step + 1)
            model(tf.constant(to_model_input(images[chosen[start:start + batch]])), training=True)
    finally:
        for layer, momentum in zip(layers, momenta):
            layer.momentum = momentum  # saved with the model: a later fine-tune trains as before


def learning_rate_schedule(options: TrainOptions, total_steps: int):
    """Warm up linearly from learning_rate / 10 to learning_rate, then cosine-decay to zero."""
    import keras

    warmup_steps = int(total_steps * WARMUP_SHARE)
    return keras.optimizers.schedules.CosineDecay(
        initial_learning_rate=options.learning_rate / 10,
        decay_steps=max(1, total_steps - warmup_steps),  # counted after the warm-up
        alpha=0.0,
        warmup_target=options.learning_rate,
        warmup_steps=warmup_steps,
    )


def training_dataset(images: np.ndarray, labels: np.ndarray, options: TrainOptions,
                     augmentation: Augmentation | None, tf_targets=None):
    """Shuffled batches of (float32 [B, 28, 28, 1] in [0, 1], int64 labels), augmented when asked.

    Images stay uint8 until batched (a quarter of the memory in the shuffle buffer);
    scaling and augmentation are batched ops on a parallel map, overlapped with
    training by prefetch. Every random choice is seeded from options.seed.
    """
    import tensorflow as tf

    from training.augment import augment

    tf_targets = tf_targets or _tf_targets
    dataset = tf.data.Dataset.from_tensor_slices((np.asarray(images, np.uint8), np.asarray(labels, np.int64)))
    dataset = dataset.shuffle(len(images), seed=options.seed, reshuffle_each_iteration=True)
    dataset = dataset.batch(options.batch_size)
    scale = lambda x, y: (tf.cast(x, tf.float32)[..., None] / 255.0, tf_targets(y))  # noqa: E731
    dataset = dataset.map(scale, num_parallel_calls=DATA_THREADS)
    if augmentation is not None:
        # One stateless seed per batch, different in every epoch and repeatable.
        batch_seeds = tf.data.Dataset.random(seed=options.seed, rerandomize_each_iteration=True)
        dataset = tf.data.Dataset.zip(dataset, batch_seeds).map(
            lambda batch, seed: (augment(batch[0], tf.stack([tf.constant(options.seed, tf.int64), seed]),
                                         augmentation), batch[1]),
            num_parallel_calls=DATA_THREADS,
        )
    return without_autotune(dataset.prefetch(PREFETCH_BATCHES))


def validation_batches(images: np.ndarray, soft_targets: np.ndarray):
    """The validation split as a dataset of PREDICT_BATCH-image batches, without tf.data's autotuning
    (see without_autotune: Keras would wrap the arrays in an autotuned dataset of its own)."""
    import tensorflow as tf

    return without_autotune(tf.data.Dataset.from_tensor_slices((images, soft_targets)).batch(PREDICT_BATCH))


def without_autotune(dataset):
    """`dataset` with tf.data's autotuning off. Keras makes a new iterator of the dataset for every
    epoch and drops the old one, and an autotuned iterator's destructor waits for its tuning thread,
    which sleeps between rounds for up to a minute as the run goes on: measured on the 2-core VM
    (`python -m training model3`, 2026-12-08; gdb showed the fitting thread in ~RootDataset::Iterator
    waiting on Model::OptimizeLoop), every epoch after the first began 47-52 s late, 190 s of a 622 s
    fit. The pipeline's parallelism is fixed instead (DATA_THREADS, PREFETCH_BATCHES), as Keras does
    for its own PyDataset adapter."""
    import tensorflow as tf

    options = tf.data.Options()
    options.autotune.enabled = False
    return dataset.with_options(options)


def targets(labels: np.ndarray) -> np.ndarray:
    """Training targets [N, 10]: one-hot for digits, uniform for NOT_A_DIGIT (-1)."""
    labels = np.asarray(labels, np.int64)
    out = np.zeros((len(labels), 10), np.float32)
    out[labels < 0] = 0.1
    out[np.flatnonzero(labels >= 0), labels[labels >= 0]] = 1.0
    return out


def _tf_targets(labels):
    import tensorflow as tf

    uniform = tf.fill([tf.shape(labels)[0], 10], 0.1)
    return tf.where(labels[:, None] < 0, uniform, tf.one_hot(tf.maximum(labels, 0), 10))


def predict(model, images: np.ndarray) -> np.ndarray:
    """Native probabilities [N, 10] for images float32 [N, 28, 28, 1], PREDICT_BATCH at a time.
    Batch by batch rather than `model.predict`, which wraps the array in an autotuned tf.data
    pipeline whose end waits for its tuning thread (without_autotune)."""
    images = np.asarray(images, np.float32)
    if len(images) == 0:
        return np.zeros((0, 10), np.float32)
    return np.concatenate([np.asarray(model.predict_on_batch(images[start:start + PREDICT_BATCH]))
                           for start in range(0, len(images), PREDICT_BATCH)])


def to_onnx(model, name: str = "model"):
    """(ONNX model, name of its probabilities output), via Keras' own ONNX export (tf2onnx.from_function)."""
    import onnx
    import tensorflow as tf

    from training.onnx_contract import INPUT_NAME, OPSET

    signature = [tf.TensorSpec([None, 28, 28, 1], tf.float32, name=INPUT_NAME)]
    with tempfile.TemporaryDirectory(prefix=f"{name}-onnx-") as folder:
        path = Path(folder) / f"{name}.onnx"
        with warnings.catch_warnings():  # Keras' tf2onnx numpy-2 patch probes np.object: a FutureWarning
            warnings.simplefilter("ignore", FutureWarning)
            model.export(str(path), format="onnx", input_signature=signature, opset_version=OPSET, verbose=False)
        onnx_model = onnx.load(str(path))
    outputs = [value.name for value in onnx_model.graph.output]
    if len(outputs) != 1:
        raise RuntimeError(f"expected one ONNX output from {name}, found {outputs}")
    return onnx_model, outputs[0]


def _save(name: str, model, temperature: float, onnx_model, probabilities_output: str,
          test_set: tuple[np.ndarray, np.ndarray],
          metadata: dict[str, Any], exports_dir):
    from training import native_calibration
    from training.calibration import temper
    from training.export import save_model
    from training.onnx_contract import PARITY_SAMPLES

    return save_model(
        name=name,
        # The .keras file predicts the calibrated probabilities, as the ONNX graph: the temperature
        # folded into the final Dense (training/native_calibration.py); `model` stays as trained.
        write_native=lambda path: native_calibration.save_folded_keras(model, temperature, path),
        onnx_model=onnx_model,
        probabilities_output=probabilities_output,
        # The ONNX conversion, checked on the network as trained with the temperature the graph adds.
        native_predict=lambda images: temper(predict(model, images), temperature),
        load_native=native_calibration.file_predictor,
        parity_images=test_set[0][:PARITY_SAMPLES],
        test_set=test_set,
        metadata=metadata,
        exports_dir=exports_dir,
        folded_temperature=temperature,
    )


# --------------------------------------------------------------------------- helpers


def _progress(event, options: TrainOptions, batches: int, total_steps: int, elapsed: float) -> Progress:
    """A Progress event from a bridged Keras callback event."""
    logs = event.logs
    if event.kind == "batch":
        step = (event.epoch - 1) * batches + event.batch
        status = f"Epoch {event.epoch}/{options.epochs}, Batch {event.batch}/{batches}"
        val_accuracy = None
    else:
        step = event.epoch * batches
        val_accuracy = logs.get("val_accuracy")
        status = f"Epoch {event.epoch}/{options.epochs}, Batch {batches}/{batches}"
        if val_accuracy is not None:
            status += f", validation accuracy {val_accuracy:.2%}"
    return Progress(
        progress=_PREPARE_END + (_TRAIN_END - _PREPARE_END) * step / total_steps,
        status=status, epoch=event.epoch, epochs=options.epochs,
        batch=event.batch if event.kind == "batch" else batches, batches=batches,
        loss=logs.get("loss"), accuracy=logs.get("accuracy"), val_accuracy=val_accuracy, elapsed=elapsed,
    )


def _machine() -> dict[str, Any]:
    """Where the timing was taken: CPU count and load (other people share this machine)."""
    import os

    info: dict[str, Any] = {"cpus": os.cpu_count()}
    try:
        info["load_average_1_5_15min"] = [round(value, 2) for value in os.getloadavg()]
    except OSError:
        pass
    return info
