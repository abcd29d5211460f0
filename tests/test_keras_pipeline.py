"""The Keras trainers' input pipeline and prediction helper (training/keras_training.py).

tf.data's autotuning is off in every pipeline the trainers build: Keras makes a new iterator for every
epoch, and an autotuned iterator's destructor waits for its tuning thread (47-52 s at the start of
every epoch after the first of a full Model 3 run, measured: keras_training.without_autotune). How
long that took is a benchmark's business (`python -m training model3` reports the fit's seconds); these
tests check the pipelines are built that way and still give what training needs.
"""
from __future__ import annotations

import numpy as np
import pytest

from training.augment import Augmentation
from training.options import TrainOptions

pytestmark = [pytest.mark.tensorflow]


@pytest.fixture(scope="module")
def tf():
    return pytest.importorskip("tensorflow", reason="TensorFlow is not installed: nothing here can run without it")


def test_the_training_pipeline_is_not_autotuned_and_yields_every_image_once_an_epoch(tf):
    from training.keras_training import DATA_THREADS, training_dataset

    images = np.arange(250, dtype=np.uint8)[:, None, None] * np.ones((1, 28, 28), np.uint8)
    labels = np.arange(250) % 10
    for augmentation in (None, Augmentation(shift=2.0)):
        dataset = training_dataset(images, labels, TrainOptions(epochs=2, batch_size=64, seed=0), augmentation)
        assert dataset.options().autotune.enabled is False
        assert DATA_THREADS >= 2
        epochs = [[(x.numpy(), y.numpy()) for x, y in dataset] for _ in range(2)]
        for batches in epochs:
            assert [len(x) for x, _ in batches] == [64, 64, 64, 58]
            seen = np.concatenate([y for _, y in batches])
            assert sorted(seen.argmax(1)) == sorted(labels)  # one-hot targets of every image, once
        if augmentation is None:
            # Unaugmented, an image is its index / 255 everywhere: each epoch holds every image once,
            # reshuffled between epochs.
            orders = [np.concatenate([np.rint(x[:, 0, 0, 0] * 255) for x, _ in batches]) for batches in epochs]
            assert sorted(orders[0]) == sorted(orders[1]) == list(range(250))
            assert not np.array_equal(orders[0], orders[1])


def test_the_validation_split_is_one_unautotuned_pass_in_prediction_batches(tf):
    from training.keras_training import PREDICT_BATCH, targets, validation_batches

    images = np.random.default_rng(0).random((PREDICT_BATCH + 7, 28, 28, 1)).astype(np.float32)
    labels = np.r_[np.arange(PREDICT_BATCH) % 10, [-1] * 7]  # non-digits: uniform targets
    dataset = validation_batches(images, targets(labels))
    assert dataset.options().autotune.enabled is False
    batches = list(dataset)
    assert [len(x) for x, _ in batches] == [PREDICT_BATCH, 7]
    np.testing.assert_array_equal(np.concatenate([x.numpy() for x, _ in batches]), images)
    np.testing.assert_allclose(batches[1][1].numpy(), 0.1)


def test_predict_gives_kerass_own_probabilities_in_batches_and_nothing_for_nothing(tf):
    from training import model3_cnn
    from training.keras_training import PREDICT_BATCH, predict

    model = model3_cnn.build_model()
    images = np.random.default_rng(1).random((PREDICT_BATCH + 3, 28, 28, 1)).astype(np.float32)
    ours = predict(model, images)
    assert ours.shape == (PREDICT_BATCH + 3, 10)
    np.testing.assert_allclose(ours, model.predict(images, batch_size=256, verbose=0), atol=1e-5)
    assert predict(model, images[:0]).shape == (0, 10)
