"""Deskewing: straighten a slanted digit by a shear, the classic MNIST normalisation.

A linear classifier has one template per digit, so a slanted "1" and an upright "1"
look like different digits to it. Shearing every image so its principal axis is
vertical (and its centre of mass sits at the image centre) removes most of that
variation before the classifier sees it. Model 1 stays a logistic regression; only
its input is normalised.

Two implementations that must agree (tests and the export parity check compare them):
    deskew_images(x)        NumPy, for training and the native (joblib) model
    deskew_onnx_nodes(...)  the same computation as ONNX nodes inside the exported graph

Image moments are computed in float64 in both, and the resampling is bilinear with
zero padding (SciPy "grid-constant" == ONNX GridSample padding_mode="zeros", align_corners=1).
"""
from __future__ import annotations

import numpy as np

SIZE = 28
CENTRE = SIZE / 2  # where the centre of mass lands, as in the classic deskew recipe
MAX_SHEAR = 1.0  # |shear| cap (45 degrees): keeps strokes that are nearly horizontal lines sane
_EPS = 1e-12

# Moment weights per pixel (row-major): mass, row, column, row^2, row*column.
_ROWS, _COLS = np.meshgrid(np.arange(SIZE, dtype=np.float64), np.arange(SIZE, dtype=np.float64), indexing="ij")
_MOMENT_WEIGHTS = np.stack([np.ones(SIZE * SIZE), _ROWS.ravel(), _COLS.ravel(),
                            (_ROWS ** 2).ravel(), (_ROWS * _COLS).ravel()], axis=1)


def shear_parameters(flat: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(row centre of mass, column centre of mass, shear) per image, from images [N, 784]."""
    sums = np.asarray(flat, dtype=np.float64) @ _MOMENT_WEIGHTS
    mass = np.maximum(sums[:, 0], _EPS)
    row_mean = sums[:, 1] / mass
    col_mean = sums[:, 2] / mass
    row_var = np.maximum(sums[:, 3] / mass - row_mean * row_mean, _EPS)
    covariance = sums[:, 4] / mass - row_mean * col_mean
    shear = np.clip(covariance / row_var, -MAX_SHEAR, MAX_SHEAR)
    return row_mean, col_mean, shear


# Images per vectorised step. A step's temporaries are ~60 x 28 floats an image: 512 images keep them in the
# cache, 2048 do not. 140,000 images (Model 1's mix), one BLAS thread: 2.7-8.3 s in steps of 2048, 1.5 s in
# steps of 512 (1.4-1.5 s from 128 to 512; the same output, each image is deskewed on its own).
CHUNK = 512


def deskew_images(x: np.ndarray, chunk: int = CHUNK) -> np.ndarray:
    """Deskewed copies of images in [0, 1]: [N, 784] (or [N, 28, 28]) -> float32 [N, 784].

    Output pixel (i, j) is sampled bilinearly (zeros outside) at input
    (i + r - 14, j + s * (i - 14) + c - 14), where (r, c) is the centre of mass and s the
    shear: rows are shifted sideways in proportion to their height, which makes the
    digit's main axis vertical. This is scipy.ndimage.affine_transform(order=1,
    mode="grid-constant") per image (the tests compare the two), vectorised over the
    batch because one SciPy call per image is ~1.7x slower on 55,000 images.
    """
    images = np.asarray(x, dtype=np.float32).reshape(-1, SIZE, SIZE)
    out = np.empty((len(images), SIZE * SIZE), dtype=np.float32)
    for start in range(0, len(images), chunk):
        out[start:start + chunk] = _deskew_chunk(images[start:start + chunk])
    return out


# Zero borders wide enough for any source coordinate: |row shift| <= 14, |column shift| <= 14 * (1 + MAX_SHEAR).
_ROW_PAD = SIZE // 2 + 2
_COL_PAD = int(SIZE / 2 * (1 + MAX_SHEAR)) + 2


def _deskew_chunk(images: np.ndarray) -> np.ndarray:
    # The map is a shear along rows, so bilinear sampling splits into two 1-D passes:
    # every output row blends the same two source rows (one offset per image), then
    # each row is shifted sideways by its own fractional offset. The gathers index
    # flattened arrays: np.take on 1-D is several times faster than multi-axis indexing.
    n = len(images)
    row_mean, col_mean, shear = shear_parameters(images.reshape(n, -1))
    rows = np.arange(SIZE)

    row_source = row_mean - CENTRE  # source row = i + row_source
    row_floor = np.floor(row_source)
    row_frac = (row_source - row_floor).astype(np.float32)[:, None, None]
    padded_height = SIZE + 2 * _ROW_PAD
    padded = np.pad(images, ((0, 0), (_ROW_PAD, _ROW_PAD), (0, 0))).reshape(n * padded_height, SIZE)
    top = (np.arange(n)[:, None] * padded_height + row_floor.astype(np.int64)[:, None] + _ROW_PAD
           + rows[None, :])  # [n, 28]: index of the upper source row for each output row
    blended = (1 - row_frac) * padded[top] + row_frac * padded[top + 1]

    col_source = shear[:, None] * (rows[None, :] - CENTRE) + (col_mean - CENTRE)[:, None]  # [n, 28]: per output row
    col_floor = np.floor(col_source)
    col_frac = (col_source - col_floor).astype(np.float32)[:, :, None]
    padded_width = SIZE + 2 * _COL_PAD
    padded = np.pad(blended, ((0, 0), (0, 0), (_COL_PAD, _COL_PAD))).ravel()
    row_starts = np.arange(n * SIZE).reshape(n, SIZE) * padded_width + col_floor.astype(np.int64) + _COL_PAD
    left = row_starts[:, :, None] + rows[None, None, :]  # [n, 28, 28]: left source pixel of each output pixel
    sampled = (1 - col_frac) * np.take(padded, left) + col_frac * np.take(padded, left + 1)
    return sampled.reshape(n, SIZE * SIZE)


def deskew_onnx_nodes(image: str, output: str, prefix: str = "deskew_"):
    """ONNX nodes + initializers computing `output` float32 [N, 784] from `image` float32 [N, 28, 28, 1].

    Needs opset >= 16 (GridSample).
    """
    from onnx import TensorProto, helper, numpy_helper

    p = prefix
    constants = {
        "flat_shape": np.array([-1, SIZE * SIZE], dtype=np.int64),
        "nchw_shape": np.array([-1, 1, SIZE, SIZE], dtype=np.int64),
        "column_shape": np.array([-1, 1, 1], dtype=np.int64),
        "weights": _MOMENT_WEIGHTS,
        "eps": np.array(_EPS),
        "min_shear": np.array(-MAX_SHEAR),
        "max_shear": np.array(MAX_SHEAR),
        "centre": np.array(CENTRE),
        "rows": (_ROWS - CENTRE)[None],  # [1, 28, 28], centred
        "cols": _COLS[None],
        # align_corners=1: pixel index k maps to 2k/27 - 1
        "scale": np.array(2.0 / (SIZE - 1)),
        "one": np.array(1.0),
        "axis1": np.array([1], dtype=np.int64),
        "last_axis": np.array([-1], dtype=np.int64),
    }
    initializers = [numpy_helper.from_array(value, name=p + name) for name, value in constants.items()]

    def column(index: int, name: str) -> list:
        # sums[:, index] as [N]
        return [
            helper.make_node("Slice", [p + "sums", p + f"start{index}", p + f"end{index}", p + "axis1"],
                             [p + name + "_2d"]),
            helper.make_node("Squeeze", [p + name + "_2d", p + "axis1"], [p + name]),
        ]

    for index in range(5):
        initializers.append(numpy_helper.from_array(np.array([index], dtype=np.int64), name=p + f"start{index}"))
        initializers.append(numpy_helper.from_array(np.array([index + 1], dtype=np.int64), name=p + f"end{index}"))

    def node(op, inputs, out, **attrs):
        return helper.make_node(op, [p + i if not i.startswith("@") else i[1:] for i in inputs], [p + out], **attrs)

    nodes = [
        node("Reshape", ["@" + image, "flat_shape"], "flat"),
        node("Cast", ["flat"], "flat64", to=TensorProto.DOUBLE),
        node("MatMul", ["flat64", "weights"], "sums"),
        *column(0, "mass_raw"), *column(1, "sum_r"), *column(2, "sum_c"), *column(3, "sum_rr"), *column(4, "sum_rc"),
        node("Max", ["mass_raw", "eps"], "mass"),
        node("Div", ["sum_r", "mass"], "row_mean"),
        node("Div", ["sum_c", "mass"], "col_mean"),
        node("Div", ["sum_rr", "mass"], "e_rr"),
        node("Mul", ["row_mean", "row_mean"], "row_mean_sq"),
        node("Sub", ["e_rr", "row_mean_sq"], "row_var_raw"),
        node("Max", ["row_var_raw", "eps"], "row_var"),
        node("Div", ["sum_rc", "mass"], "e_rc"),
        node("Mul", ["row_mean", "col_mean"], "rc_means"),
        node("Sub", ["e_rc", "rc_means"], "covariance"),
        node("Div", ["covariance", "row_var"], "shear_raw"),
        node("Max", ["shear_raw", "min_shear"], "shear_low"),
        node("Min", ["shear_low", "max_shear"], "shear"),
        # Per-image values as [N, 1, 1] to broadcast over the 28x28 grid.
        node("Sub", ["row_mean", "centre"], "row_shift_1d"),
        node("Reshape", ["row_shift_1d", "column_shape"], "row_shift"),
        node("Sub", ["col_mean", "centre"], "col_shift_1d"),
        node("Reshape", ["col_shift_1d", "column_shape"], "col_shift"),
        node("Reshape", ["shear", "column_shape"], "shear_3d"),
        # Source coordinates: row = i + r - 14 ; col = j + s * (i - 14) + c - 14
        node("Add", ["rows", "centre"], "rows_abs"),
        node("Add", ["rows_abs", "row_shift"], "src_row"),
        node("Mul", ["shear_3d", "rows"], "sheared"),
        node("Add", ["sheared", "cols"], "col_sheared"),
        node("Add", ["col_sheared", "col_shift"], "src_col"),
        node("Mul", ["src_row", "scale"], "y_scaled"),
        node("Sub", ["y_scaled", "one"], "y_norm"),
        node("Mul", ["src_col", "scale"], "x_scaled"),
        node("Sub", ["x_scaled", "one"], "x_norm"),
        node("Unsqueeze", ["x_norm", "last_axis"], "x_last"),
        node("Unsqueeze", ["y_norm", "last_axis"], "y_last"),
        node("Concat", ["x_last", "y_last"], "grid64", axis=-1),  # GridSample wants (x, y) = (col, row)
        node("Cast", ["grid64"], "grid", to=TensorProto.FLOAT),
        node("Reshape", ["@" + image, "nchw_shape"], "nchw"),
        node("GridSample", ["nchw", "grid"], "sampled", mode="bilinear", padding_mode="zeros", align_corners=1),
        helper.make_node("Reshape", [p + "sampled", p + "flat_shape"], [output]),
    ]
    return nodes, initializers
