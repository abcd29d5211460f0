"""Personalised training (issue 12): the corrected drawings in a trainer's data, and what they changed.

A trainer calls, in this order (a few marked lines in model1_logreg.py / model2_cnn.py):

    run = PersonalRun.start(NAME, NATIVE_FORMAT, options, data, exports_dir)   # before training
    options = run.options                      # a fine-tune runs fewer epochs at a lower step size
    x_train, y_train = run.training_data(x_train, y_train)
    model = run.serving_model() or build_model()           # fine_tune: continue from the serving model
    metadata.update(run.report(onnx_model, test_accuracy))  # before/after, MNIST test and held-out drawings

The drawings come from the drawings database (drawings/store.py, $DRAWINGS_DB). One in
HOLD_OUT_EVERY by id is never trained on: those measure every run, before (the model
serving now) and after (the new one), whether or not the run includes drawings.

Weighting: the drawings are repeated until they make up DRAWINGS_SHARE of the training
examples, so 80 drawings weigh like ~2,900 of the 55,000 MNIST images instead of 0.15%.
Repeating (rather than per-sample weights) works unchanged with both trainers' batching
and Model 2's augmentation, which varies every repeat.
"""
from __future__ import annotations

import logging
import math
import warnings
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from drawings.store import DrawingStore, StoreError, TrainingDrawings
from training import native_calibration
from training.artifacts import read_metadata
from training.model_versions import model_source
from training.onnx_contract import to_model_input
from training.options import TrainOptions

log = logging.getLogger(__name__)

DRAWINGS_SHARE = 0.05  # of a full run's training examples, after repeating the drawings
FINE_TUNE_SHARE = 0.25  # of a fine-tune's examples: it is about the drawings, with MNIST to keep what it knows
FINE_TUNE_MNIST = 4000  # MNIST training images beside the drawings in a fine-tune (a trainer may ask more)
FINE_TUNE_EPOCHS = 3  # at most, in a fine-tune
# MNIST training images a fine-tune builds its canvas mix from (training/canvas_data.py): the full
# mix is ~120,000 drawings to draw (without its cache) and learn from, a fine-tune must finish in a minute.
FINE_TUNE_LIMIT = 5000
FINE_TUNE_LR_SCALE = 0.1  # a fine-tune's step size, relative to the option's: small steps from a good model
MAX_REPEAT = 500  # one drawing is never repeated more than this (a single drawing must not swamp a run)


class PersonalTrainingError(ValueError):
    """The run asked for drawings that cannot be used (none yet, no serving model to fine-tune)."""


@dataclass
class PersonalRun:
    name: str
    native_format: str
    options: TrainOptions
    exports_dir: Any
    trained: TrainingDrawings  # drawings trained on (when the run includes them)
    held_out: TrainingDrawings  # never trained on
    before: dict[str, float | None] = field(default_factory=dict)
    repeat: int = 0  # times each drawing appears in this run's training data
    fine_tune_mnist: int = FINE_TUNE_MNIST  # MNIST training images a fine-tune keeps beside the drawings

    @classmethod
    def start(cls, name: str, native_format: str, options: TrainOptions, data, exports_dir=None,
              store: DrawingStore | None = None, fine_tune_mnist: int = FINE_TUNE_MNIST) -> "PersonalRun":
        """Load the drawings and measure the serving model on MNIST test and the held-out drawings.
        `fine_tune_mnist`: the MNIST training images a fine-tune keeps beside the drawings (its canvas mix
        is then built from at least as many)."""
        store = store if store is not None else DrawingStore.from_environment()
        try:
            if not options.include_drawings and not store.exists():
                raise StoreError("no drawings database yet")  # a plain run does not create one
            drawings = store.training_drawings()
        except StoreError as error:
            if options.include_drawings:
                raise PersonalTrainingError(str(error)) from error
            log.info("no held-out drawings to report on: %s", error)
            drawings = TrainingDrawings(np.zeros(0, np.int64), np.zeros((0, 28, 28), np.uint8), np.zeros(0, np.int64))
        trained, held_out = drawings.split()
        if options.include_drawings and not len(trained):
            raise PersonalTrainingError(
                f"There are no drawings to train on yet ({len(held_out)} held out for measuring): save some "
                "corrections on the Draw tab or with POST /drawings first")
        if options.fine_tune:
            if not model_source(exports_dir).serving_files(name).paths["native"].is_file():
                raise PersonalTrainingError(f"There is no serving {name} to fine-tune: train it in full first")
            most = max(FINE_TUNE_LIMIT, fine_tune_mnist)
            options = replace(options, epochs=min(options.epochs, FINE_TUNE_EPOCHS),
                              learning_rate=options.learning_rate * FINE_TUNE_LR_SCALE,
                              limit=min(options.limit or most, most))
        run = cls(name, native_format, options, exports_dir, trained, held_out, fine_tune_mnist=fine_tune_mnist)
        run.before = run._measure_serving(data)
        return run

    # -- data ------------------------------------------------------------------

    def training_data(self, x_train: np.ndarray, y_train: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The training split with the drawings mixed in (unchanged when the run does not include them);
        a fine-tune keeps a seeded FINE_TUNE_MNIST sample of MNIST beside them."""
        x, y, _ = self.weighted_training_data(x_train, y_train, np.ones(len(x_train)))
        return x, y

    def weighted_training_data(self, x_train: np.ndarray, y_train: np.ndarray, weights: np.ndarray,
                               mnist_rows: int | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """training_data() with a per-example weight carried along; the drawings get weight 1.
        `mnist_rows`: the first rows of x_train that are MNIST digits (the canvas mix puts them first): a
        fine-tune's sample is drawn from those only. Measured (Model 1, quick options, 100 seven-segment
        drawings: tests/test_personal.py): a sample of the whole mix cost 1.05 points of MNIST test (94.87 ->
        93.82%; the mix's canvas share is not what the serving model was fitted on), MNIST alone 0.18 (->
        94.69%); the held-out drawings went 87.5 -> 100% both ways."""
        if not self.options.include_drawings:
            return x_train, y_train, weights
        pool = len(x_train) if mnist_rows is None else min(mnist_rows, len(x_train))
        if self.options.fine_tune and (pool > self.fine_tune_mnist or pool < len(x_train)):
            keep = np.sort(np.random.default_rng(self.options.seed).choice(pool, min(pool, self.fine_tune_mnist),
                                                                           replace=False))
            x_train, y_train, weights = x_train[keep], y_train[keep], weights[keep]
        share = FINE_TUNE_SHARE if self.options.fine_tune else DRAWINGS_SHARE
        self.repeat = repeats_for(len(x_train), len(self.trained), share)
        images = np.concatenate([x_train, np.repeat(self.trained.images, self.repeat, axis=0)])
        labels = np.concatenate([np.asarray(y_train), np.repeat(self.trained.labels, self.repeat).astype(y_train.dtype)])
        weights = np.concatenate([weights, np.ones(len(self.trained) * self.repeat)])
        # Shuffled once here too: a trainer that batches in order must not see the drawings only at the end.
        order = np.random.default_rng(self.options.seed).permutation(len(images))
        return images[order], labels[order], weights[order]

    # -- starting point ----------------------------------------------------------

    def serving_model(self):
        """The serving native model to continue from (fine_tune), else None (train from scratch).

        A native file with the calibration folded into its last layer (its metadata records the
        temperature: training/native_calibration.py) is unfolded, so the run continues from the
        network as it was trained, not from a copy sharpened or softened by 1/T: its loss, gradients
        and the temperature fitted after it are those of the trained network, as before the fold."""
        if not self.options.fine_tune:
            return None
        paths = self._serving_paths()
        if self.native_format == "keras":
            import keras

            model = keras.saving.load_model(paths["native"], compile=False)
        else:
            import joblib

            model = joblib.load(paths["native"])
        temperature = native_calibration.folded_temperature(read_metadata(paths["metadata"]))
        if temperature is not None:
            try:
                native_calibration.unfold(model, temperature)
            except ValueError as error:  # not the trainer's kind of model: warm_start_linear says what to do
                log.warning("cannot unfold the serving %s: %s", self.name, error)
        return model

    def warm_start_linear(self, classifier, features: np.ndarray, labels: np.ndarray) -> None:
        """fine_tune for Model 1's MLPClassifier: start `classifier` from the serving pipeline's weights.

        scikit-learn takes no starting weights for partial_fit, so one pass over a seeded batch of the
        training data builds the classifier (its layers and SGD state), and the serving weights are then
        copied into its arrays in place (the optimizer updates those very arrays); the trainer's
        partial_fit loop continues from there. The only trace of the building pass is one step's
        momentum, small beside the serving weights.
        """
        pipeline = self.serving_model()
        if pipeline is None:
            return
        serving = pipeline.steps[-1][1] if hasattr(pipeline, "steps") else pipeline
        if not hasattr(serving, "coefs_"):
            raise PersonalTrainingError("The serving model was trained by an older version of this trainer; "
                                        "train it in full once before fine-tuning")
        batch = np.random.default_rng(self.options.seed).choice(len(features), min(len(features), 1000), replace=False)
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="Got `batch_size` less than 1 or larger than sample size")
            classifier.partial_fit(features[batch], labels[batch], classes=np.arange(10))
        for mine, theirs in zip(classifier.coefs_ + classifier.intercepts_, serving.coefs_ + serving.intercepts_):
            mine[...] = theirs

    def _serving_paths(self) -> dict[str, Path]:
        """The serving model's files: the version that serves, or those of the run's --exports-dir folder."""
        return model_source(self.exports_dir).serving_files(self.name).paths

    # -- the report ----------------------------------------------------------------

    def report(self, onnx_model, test_accuracy: float) -> dict[str, Any]:
        """What goes into the metadata (and so the job's Result, the model card and the version list)."""
        from training import onnx_contract

        after = {"mnist_test": round(float(test_accuracy), 6),
                 "drawings": (round(onnx_contract.accuracy(onnx_model, to_model_input(self.held_out.images),
                                                           self.held_out.labels), 6)
                              if len(self.held_out) else None)}
        return {
            "drawings_accuracy": after["drawings"],
            "personal": {
                "include_drawings": self.options.include_drawings,
                "fine_tune": self.options.fine_tune,
                "drawings_trained_on": len(self.trained) if self.options.include_drawings else 0,
                "drawings_held_out": len(self.held_out),
                "held_out_rule": "sha256(id) % 5 == 0 (drawings/store.py: is_held_out)",
                "repeat": self.repeat,
                "before": self.before,
                "after": after,
            },
        }

    def _measure_serving(self, data) -> dict[str, float | None]:
        """The serving ONNX model's accuracy on MNIST test and on the held-out drawings (None when absent)."""
        from training import onnx_contract

        path = Path(self._serving_paths()["onnx"])
        try:
            model_bytes = path.read_bytes()
        except OSError:
            return {"mnist_test": None, "drawings": None}

        def accuracy(images: np.ndarray, labels: np.ndarray) -> float | None:
            if not len(images):
                return None
            try:
                return round(float(np.mean(onnx_contract.run_onnx(model_bytes, to_model_input(images)).argmax(1) == labels)), 6)
            except Exception as error:  # a broken serving file: nothing to compare with, the run goes on
                log.warning("cannot measure the serving %s: %s", self.name, error)
                return None

        return {"mnist_test": self._recorded_test_accuracy(data) or accuracy(data.x_test, np.asarray(data.y_test)),
                "drawings": accuracy(self.held_out.images, self.held_out.labels)}

    def _recorded_test_accuracy(self, data) -> float | None:
        """The serving export's own ONNX test accuracy, when it was measured on this same official test
        set: the same file on the same images gives the same number, without 10,000 more inferences
        (~2 s of Model 2's fine-tune budget)."""
        metadata = read_metadata(self._serving_paths()["metadata"]) or {}
        same_data = bool(getattr(data, "is_official", False)) and (metadata.get("data") or {}).get("sha256") == data.sha256
        value = metadata.get("onnx_test_accuracy")
        return round(float(value), 6) if same_data and value is not None else None


def repeats_for(mnist_count: int, drawing_count: int, share: float) -> int:
    """How often each drawing is repeated so the drawings make up `share` of the examples."""
    if drawing_count == 0:
        return 0
    wanted = share / (1 - share) * mnist_count
    return int(min(MAX_REPEAT, max(1, math.ceil(wanted / drawing_count))))


