"""Model 3's training extras (issue 21), each checked on a tiny network where the right answer can be
computed by hand: the share of images the augmentation leaves untouched, the served weights being
Adam's moving average of the last steps' weights, and batch normalisation's statistics measured
afresh as the plain mean over un-augmented images, and the elastic warp. Needs TensorFlow (no MNIST)."""
from __future__ import annotations

import numpy as np
import pytest

from training.augment import Augmentation
from training.options import TrainOptions

pytestmark = [pytest.mark.tensorflow]


@pytest.fixture(scope="module")
def tf():
    return pytest.importorskip("tensorflow", reason="TensorFlow is not installed: nothing here can run without it")


def digits_like(count: int, seed: int = 0) -> np.ndarray:
    """float32 [count, 28, 28, 1]: a random bar per image, so every image differs from its own augmentation."""
    rng = np.random.default_rng(seed)
    images = np.zeros((count, 28, 28, 1), np.float32)
    for image in images:
        row, col = rng.integers(6, 20, size=2)
        image[row - 4:row + 4, col - 1:col + 2] = 1.0
    return images


def test_the_kept_share_of_a_batch_passes_untouched_and_the_rest_is_augmented(tf):
    from training.augment import augment

    images = digits_like(400)
    seed = tf.constant([0, 5], tf.int64)
    settings = Augmentation(keep_share=0.25)
    out = augment(tf.constant(images), seed, settings).numpy()
    untouched = np.all(out == images, axis=(1, 2, 3))
    assert 0.18 < untouched.mean() < 0.32  # a quarter, drawn per image
    # The same seed gives the same batch; every kept image is exactly its input.
    assert np.array_equal(out, augment(tf.constant(images), seed, settings).numpy())
    # Without a kept share nothing passes untouched, and the other draws are those of keep_share=0.25's
    # augmented images (the keep decision has a seed of its own).
    plain = augment(tf.constant(images), seed, Augmentation()).numpy()
    assert not np.all(plain == images, axis=(1, 2, 3)).any()
    assert np.array_equal(plain[~untouched], out[~untouched])
    everything = augment(tf.constant(images), seed, Augmentation(keep_share=1.0)).numpy()
    assert np.array_equal(everything, images)


def test_the_elastic_warp_matches_the_affine_one_when_it_is_off_and_bends_smoothly_within_its_size(tf):
    from training.augment import ELASTIC_GRID, random_affine, random_affine_elastic

    images = digits_like(64)
    seed = tf.constant([3, 9], tf.int64)
    # A vanishing field reads exactly what the affine warp (ImageProjectiveTransformV3) reads with the
    # same draws: the own bilinear sampler and its inverse map agree with TensorFlow's.
    affine_seed = tf.random.experimental.stateless_split(seed, num=2)[0]
    reference = random_affine(tf.constant(images), affine_seed, Augmentation(shift=3.0, rotation=15.0, scale=0.15))
    same = random_affine_elastic(tf.constant(images), seed, Augmentation(shift=3.0, rotation=15.0, scale=0.15,
                                                                          elastic=1e-9))
    assert np.abs(reference.numpy() - same.numpy()).max() < 1e-5

    # On a horizontal ramp (pixel value = its column / 27) with no affine part, what each pixel reads
    # is where it read from: the warp's x-displacement, seen directly.
    size = 1.5
    columns = np.tile(np.arange(28, dtype=np.float32) / 27.0, (28, 1))
    ramps = np.repeat(columns[None, :, :, None], 32, axis=0)
    warped = random_affine_elastic(tf.constant(ramps), seed, Augmentation(shift=0.0, rotation=0.0, scale=0.0,
                                                                           elastic=size)).numpy()[..., 0]
    inner = (slice(None), slice(3, 25), slice(3, 25))  # away from the border, where reads fall outside
    displacement = (warped * 27.0 - np.arange(28, dtype=np.float32))[inner]
    assert np.abs(displacement).max() <= size * 1.15  # bicubic overshoots its control points a little
    assert displacement.std() > size / 4  # it really moves the strokes
    # Smooth: a coarse ELASTIC_GRID-point field, so neighbouring pixels move almost together.
    assert np.abs(np.diff(displacement, axis=2)).max() < 2.5 * size / ELASTIC_GRID
    # Every image gets its own field, and the same seed gives the same one.
    assert np.abs(displacement[0] - displacement[1]).max() > 0.1
    again = random_affine_elastic(tf.constant(ramps), seed, Augmentation(shift=0.0, rotation=0.0, scale=0.0,
                                                                         elastic=size)).numpy()[..., 0]
    assert np.array_equal(again, random_affine_elastic(tf.constant(ramps), seed, Augmentation(
        shift=0.0, rotation=0.0, scale=0.0, elastic=size)).numpy()[..., 0])
    assert np.array_equal(warped, again)


def tiny_classifier(batch_norm: bool):
    import keras
    from keras import layers

    image = keras.Input(shape=(28, 28, 1))
    x = layers.Conv2D(4, 3, use_bias=not batch_norm)(image)
    if batch_norm:
        x = layers.BatchNormalization(momentum=0.9)(x)
    x = layers.ReLU()(x)
    x = layers.GlobalAveragePooling2D()(x)
    return keras.Model(image, layers.Dense(10, activation="softmax")(x))


def test_the_served_weights_are_the_moving_average_of_the_last_steps_weights(tf):
    import keras

    from training.keras_training import AVERAGE_SHARE, compile_for_training

    steps, batch = 40, 8
    images = digits_like(steps * batch)
    labels = keras.utils.to_categorical(np.arange(len(images)) % 10, 10)
    options = TrainOptions(epochs=1, batch_size=batch, learning_rate=0.01, limit=None, seed=0)

    def run(average: bool):
        keras.utils.set_random_seed(0)
        model = tiny_classifier(batch_norm=False)
        compile_for_training(model, options, steps, average_weights=average)
        seen = []
        record = keras.callbacks.LambdaCallback(
            on_train_batch_end=lambda *_, **__: seen.append([w.copy() for w in model.get_weights()]))
        model.fit(images, labels, batch_size=batch, epochs=1, shuffle=False, verbose=0, callbacks=[record])
        return model.get_weights(), seen

    final, seen = run(average=False)
    assert len(seen) == steps
    assert all(np.array_equal(a, b) for a, b in zip(final, seen[-1]))  # no averaging: the last step's weights

    final, seen = run(average=True)
    momentum = 1.0 - 1.0 / (AVERAGE_SHARE * steps)  # a 6-step horizon here
    expected = seen[0]
    for weights in seen[1:]:
        expected = [momentum * a + (1 - momentum) * w for a, w in zip(expected, weights)]
    for served, average, last in zip(final, expected, seen[-1]):
        np.testing.assert_allclose(served, average, rtol=1e-4, atol=1e-6)
    assert not all(np.allclose(a, b) for a, b in zip(final, seen[-1]))  # and that is not the last step's


def test_batch_norm_statistics_become_the_plain_mean_over_the_images(tf):
    import keras

    from training.keras_training import recalibrate_batch_norm

    keras.utils.set_random_seed(1)
    model = tiny_classifier(batch_norm=True)
    norm = next(layer for layer in model.layers if isinstance(layer, keras.layers.BatchNormalization))
    conv = keras.Model(model.inputs, norm.input)
    pixels = (digits_like(600, seed=3)[..., 0] * 255).astype(np.uint8)

    recalibrate_batch_norm(model, pixels, seed=0, count=500, batch=100)

    chosen = np.random.default_rng(0).permutation(len(pixels))[:500]
    features = conv.predict(pixels[chosen].astype(np.float32)[..., None] / 255.0, verbose=0)
    batches = features.reshape(5, 100, *features.shape[1:])
    np.testing.assert_allclose(norm.moving_mean.numpy(), features.mean(axis=(0, 1, 2)), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(norm.moving_variance.numpy(), batches.var(axis=(1, 2, 3)).mean(axis=0),
                               rtol=1e-3, atol=1e-5)
    assert norm.momentum == 0.9  # what a later fine-tune trains with, as saved


def test_a_model_without_batch_norm_is_left_as_it_is(tf):
    from training.keras_training import recalibrate_batch_norm

    model = tiny_classifier(batch_norm=False)
    before = [w.copy() for w in model.get_weights()]
    recalibrate_batch_norm(model, np.zeros((10, 28, 28), np.uint8), seed=0)
    assert all(np.array_equal(a, b) for a, b in zip(before, model.get_weights()))


def test_the_elastic_warp_runs_in_the_training_pipeline_partial_last_batch_included(tf):
    """augment() runs inside tf.data, where the batch axis has no static size (an eager call cannot see
    that: Keras' map_coordinates passed eagerly and failed here)."""
    from training.keras_training import training_dataset

    images = (digits_like(200)[..., 0] * 255).astype(np.uint8)
    dataset = training_dataset(images, np.arange(200) % 10, TrainOptions(epochs=1, batch_size=64, seed=0),
                               Augmentation(elastic=1.5))
    batches = [batch.numpy() for batch, _ in dataset]
    assert [len(batch) for batch in batches] == [64, 64, 64, 8]
    assert all(0.0 <= batch.min() and batch.max() <= 1.0 for batch in batches)
