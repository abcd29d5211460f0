"""Light augmentation for Model 2, so digits drawn in the app look like training data.

MNIST digits are neat: centred by mass, about 20 px tall, with a 2-3 px pen.
Digits drawn with a mouse pass through the same preprocessing (inference/preprocess.py)
but still come out slightly off-centre, tilted, a little larger or smaller, and with
thicker or thinner strokes depending on the brush. Each training batch therefore gets:

- one random affine warp per image: shift, rotation and scale in a single resampling
  (three separate Keras Random* layers would resample three times: ~3x the CPU time
  and a blurrier image), bilinear, black outside;
- for some images, a thicker stroke (3x3 dilation = max pool) or a thinner one
  (2x2 erosion = min pool);
- optionally (`elastic`, off for every shipped model) a smooth random bend of the strokes in the
  same resampling. Measured on Model 3 (5 epochs, seed 0, 2026-12-06): 1.5 px gave MNIST test
  99.53% and the drawn evaluation sets 96.87%, exactly the shipped recipe's figures, for ~1.5 ms more
  per batch of 128: not taken; kept as an option for learners to try.

All of it runs as batched TensorFlow ops inside the tf.data pipeline (not in the model,
so the saved model and its ONNX export have no augmentation layers), with stateless
random ops seeded per batch: the same seed gives the same augmented batches.
TensorFlow is imported inside the functions only.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

IMAGE_SIZE = 28
ELASTIC_GRID = 4  # control points per side of the elastic warp: bends a stroke or two, not pixel noise


@dataclass(frozen=True)
class Augmentation:
    shift: float = 2.0  # max shift in pixels, each axis (preprocessing centres by mass, so ~2 px suffices)
    rotation: float = 10.0  # max rotation in degrees, either way
    scale: float = 0.10  # max relative zoom in or out
    dilate_probability: float = 0.20  # share of images drawn with a thicker pen
    erode_probability: float = 0.10  # share of images drawn with a thinner pen
    # Share of images passed through untouched. Model 3 keeps a quarter: measured with everything
    # else equal, MNIST test 99.41 -> 99.50% (with weight averaging, training/keras_training.py),
    # because the network also sees neat digits like MNIST's own. 0 keeps Model 2's stream as it was.
    keep_share: float = 0.0
    # Largest displacement, in pixels, of a smooth random warp of each image (elastic distortion,
    # Simard et al. 2003: the wobble and bends of a hand, which an affine warp cannot make). The
    # warp is a coarse ELASTIC_GRID x ELASTIC_GRID grid of random displacements upsampled bicubically,
    # applied in the same single resampling as the affine warp. 0 keeps the plain affine warp (Model 2).
    elastic: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def augment(images, seed, settings: Augmentation):
    """Augmented copies of a batch `images` (float32 [N, 28, 28, 1] in [0, 1]).

    `seed`: an int32/int64 tensor of shape [2], the stateless-random seed of this batch.
    """
    import tensorflow as tf

    affine_seed, pen_seed = tf.unstack(tf.random.experimental.stateless_split(seed, num=2))
    original = images
    images = (random_affine(images, affine_seed, settings) if settings.elastic <= 0
              else random_affine_elastic(images, affine_seed, settings))
    images = random_pen(images, pen_seed, settings)
    images = tf.clip_by_value(images, 0.0, 1.0)
    if settings.keep_share > 0:
        # A seed of its own folded from the batch's, so the other draws stay what they were.
        keep_seed = tf.random.experimental.stateless_fold_in(seed, 3)
        pick = tf.random.stateless_uniform([tf.shape(images)[0], 1, 1, 1], seed=keep_seed)
        images = tf.where(pick < settings.keep_share, original, images)
    return images


def random_affine(images, seed, settings: Augmentation):
    """One random shift + rotation + scale per image, in a single bilinear resampling."""
    import tensorflow as tf

    a0, a1, a2, b0, b1, b2 = inverse_affine(tf.shape(images)[0], seed, settings)
    zeros = tf.zeros_like(a0)
    transforms = tf.stack([a0, a1, a2, b0, b1, b2, zeros, zeros], axis=1)
    return tf.raw_ops.ImageProjectiveTransformV3(
        images=images, transforms=transforms, output_shape=[IMAGE_SIZE, IMAGE_SIZE],
        fill_value=0.0, interpolation="BILINEAR", fill_mode="CONSTANT",
    )


def inverse_affine(count, seed, settings: Augmentation):
    """Per image, the coefficients (a0, a1, a2, b0, b1, b2) [count] of a random shift + rotation + zoom.

    ImageProjectiveTransformV3 maps each OUTPUT pixel (x, y) to the INPUT point
    (a0 x + a1 y + a2, b0 x + b1 y + b2): the inverse of "rotate and zoom about
    the centre, then shift".
    """
    import tensorflow as tf

    draws = tf.random.stateless_uniform([4, count], seed=seed, minval=-1.0, maxval=1.0)
    angle = draws[0] * (settings.rotation * math.pi / 180.0)
    zoom = 1.0 + draws[1] * settings.scale
    shift_x, shift_y = draws[2] * settings.shift, draws[3] * settings.shift
    centre = (IMAGE_SIZE - 1) / 2.0
    cos, sin = tf.cos(angle) / zoom, tf.sin(angle) / zoom
    a0, a1, b0, b1 = cos, sin, -sin, cos
    a2 = centre - (a0 * (centre + shift_x) + a1 * (centre + shift_y))
    b2 = centre - (b0 * (centre + shift_x) + b1 * (centre + shift_y))
    return a0, a1, a2, b0, b1, b2


def random_affine_elastic(images, seed, settings: Augmentation):
    """random_affine's warp plus a smooth random displacement field, in one bilinear resampling.

    Same draws and the same inverse map as random_affine (so the affine part matches it), then
    each output pixel's source point moves by the image's elastic field; black outside.
    """
    import tensorflow as tf

    affine_seed, field_seed = tf.unstack(tf.random.experimental.stateless_split(seed, num=2))
    count = tf.shape(images)[0]
    a0, a1, a2, b0, b1, b2 = inverse_affine(count, affine_seed, settings)

    grid = tf.range(IMAGE_SIZE, dtype=tf.float32)
    ys, xs = tf.meshgrid(grid, grid, indexing="ij")  # [28, 28]: row, column of each output pixel
    per_image = lambda v: v[:, None, None]  # noqa: E731
    source_x = per_image(a0) * xs + per_image(a1) * ys + per_image(a2)
    source_y = per_image(b0) * xs + per_image(b1) * ys + per_image(b2)
    coarse = tf.random.stateless_uniform([count, ELASTIC_GRID, ELASTIC_GRID, 2], seed=field_seed,
                                         minval=-1.0, maxval=1.0)
    field = tf.image.resize(coarse, [IMAGE_SIZE, IMAGE_SIZE], method="bicubic") * settings.elastic
    return bilinear_sample(images, source_x + field[..., 0], source_y + field[..., 1])


def bilinear_sample(images, source_x, source_y):
    """images [N, 28, 28, 1] read at the points (source_x, source_y) [N, 28, 28]; 0 outside the image.

    Not Keras' `keras.ops.image.map_coordinates`, which reads the same values (to 1.2e-7) eagerly but
    needs a static size on every axis: inside the tf.data pipeline the batch axis has none (the last
    batch of an epoch is smaller) and it fails ("None values not supported")."""
    import tensorflow as tf

    flat = tf.reshape(images, [tf.shape(images)[0], IMAGE_SIZE * IMAGE_SIZE])
    x0, y0 = tf.floor(source_x), tf.floor(source_y)
    fx, fy = source_x - x0, source_y - y0

    def corner(x, y):
        inside = (x >= 0) & (x <= IMAGE_SIZE - 1) & (y >= 0) & (y <= IMAGE_SIZE - 1)
        index = tf.cast(tf.clip_by_value(y, 0, IMAGE_SIZE - 1) * IMAGE_SIZE + tf.clip_by_value(x, 0, IMAGE_SIZE - 1),
                        tf.int32)
        values = tf.gather(flat, tf.reshape(index, [tf.shape(index)[0], -1]), batch_dims=1)
        return tf.where(inside, tf.reshape(values, tf.shape(x)), 0.0)

    out = ((1 - fx) * (1 - fy) * corner(x0, y0) + fx * (1 - fy) * corner(x0 + 1, y0)
           + (1 - fx) * fy * corner(x0, y0 + 1) + fx * fy * corner(x0 + 1, y0 + 1))
    return out[..., None]


def random_pen(images, seed, settings: Augmentation):
    """Thicker strokes for some images (dilation), thinner for others (erosion)."""
    import tensorflow as tf

    pick = tf.random.stateless_uniform([tf.shape(images)[0], 1, 1, 1], seed=seed)
    thicker = tf.nn.max_pool2d(images, ksize=3, strides=1, padding="SAME")
    # 2x2, not 3x3: MNIST strokes are only 2-3 px wide and a 3x3 erosion erases them.
    thinner = -tf.nn.max_pool2d(-images, ksize=2, strides=1, padding="SAME")
    images = tf.where(pick < settings.dilate_probability, thicker, images)
    return tf.where(pick > 1.0 - settings.erode_probability, thinner, images)
