"""Does the training mix's fast renderer draw what the long way draws? Pixels and the shipped models say.

    MNIST_DIR=../shared/mnist python -m benchmarks.reading.fast_canvas_check [--count 2000]

1. The same centre lines (MNIST test skeletons, no warp) and the same pens, drawn the long way
   (training/strokes.py: a 280 px canvas and inference.preprocess) and emulated
   (training/fast_canvas.py): mean pixel difference, ink, stroke share, and how the shipped
   models read both (accuracy, same answer).
2. Test digits drawn each way from scratch with its own random hand and pen (the long way:
   strokes.render_task; the fast way: centre_lines.render_task): image statistics and accuracy.
"""
from __future__ import annotations

import argparse
import time

import numpy as np


def _statistics(images: np.ndarray) -> dict[str, float]:
    from inference.preprocess import stroke_ratio

    x = images / 255.0
    rows = np.arange(28)
    widths = [np.ptp(np.flatnonzero(image.max(axis=0) > 0.05)) for image in x]
    return {"mean ink": float(x.mean()), "share > 0.5": float((x > 0.5).mean()),
            "gray edge share": float(((x > 0.05) & (x < 0.95)).sum() / (x > 0.05).sum()),
            "stroke ratio": float(np.mean([stroke_ratio(image) for image in x[:500]])),
            "width px": float(np.mean(widths)),
            "centre row": float(np.mean((x.sum(axis=2) @ rows) / x.sum(axis=(1, 2))))}


def main(argv: list[str] | None = None) -> int:
    from benchmarks.context import as_model_input, onnx_probabilities, onnx_session
    from inference.preprocess import preprocess
    from training import centre_lines, fast_canvas, strokes
    from training.artifacts import exports_dir
    from training.mnist import load_mnist
    from training.onnx_contract import to_pixels

    parser = argparse.ArgumentParser(prog="python -m benchmarks.reading.fast_canvas_check")
    parser.add_argument("--count", type=int, default=2000, help="MNIST test digits per comparison")
    args = parser.parse_args(argv)
    mnist = load_mnist()
    rng = np.random.default_rng(11)
    picked = rng.choice(len(mnist.x_test), args.count, replace=False)
    digits, labels = mnist.x_test[picked], np.asarray(mnist.y_test)[picked]
    sessions = {name: onnx_session(exports_dir() / f"{name}.onnx") for name in ("model1", "model2")}

    # 1. The same lines and pens both ways.
    pen = strokes.Pen()
    lines = strokes.skeletons(fast_canvas.mnist_shapes(digits))
    kept = [index for index, line in enumerate(lines) if line is not None]
    small = rng.random(len(kept)) < pen.small_share
    sizes = np.where(small, rng.integers(*pen.small_size, len(kept), endpoint=True),
                     rng.integers(*pen.size, len(kept), endpoint=True)).astype(float)
    widths = np.maximum(pen.min_width, sizes * rng.uniform(*pen.width, len(kept)))
    began = time.perf_counter()
    slow = []
    for index, size, width in zip(kept, sizes, widths):
        alpha = strokes.pen_alpha(lines[index], int(size), float(width))
        canvas = strokes.place_on_canvas(alpha, rng, strokes.Pen(jitter=0), False)
        slow.append(to_pixels(preprocess(np.round(255.0 * (1.0 - canvas)).astype(np.uint8))))
    slow_seconds = time.perf_counter() - began
    points = [fast_canvas.line_points(lines[index]) for index in kept]
    owner = np.repeat(np.arange(len(points)), [len(p) for p in points])
    began = time.perf_counter()
    fast = fast_canvas.emulate(np.concatenate(points), owner, sizes, widths)
    fast_seconds = time.perf_counter() - began
    slow, y = np.array(slow), labels[kept]
    print(f"1. The same {len(kept):,} centre lines and pens, long way vs emulated "
          f"({slow_seconds / len(kept) * 1e3:.2f} vs {fast_seconds / len(kept) * 1e3:.3f} ms a drawing, this load)")
    print(f"   mean pixel difference {np.abs(slow / 255.0 - fast / 255.0).mean():.4f} (of 1)")
    for name, stats in (("long way", _statistics(slow)), ("emulated", _statistics(fast))):
        print(f"   {name}: " + ", ".join(f"{key} {value:.4f}" for key, value in stats.items()))
    for model, session in sessions.items():
        a = onnx_probabilities(session, as_model_input(slow)).argmax(1)
        b = onnx_probabilities(session, as_model_input(fast)).argmax(1)
        print(f"   {model}: {np.mean(a == y):.2%} long way, {np.mean(b == y):.2%} emulated, same answer {np.mean(a == b):.1%}")

    # 2. Each way from scratch: random hand and pen.
    tasks = strokes.chunked("mnist", list(digits), (77,))
    long_way = strokes.run_to_end(strokes.iter_render(tasks))
    fast_way = strokes.run_to_end(strokes.iter_render(tasks, workers=1, render=centre_lines.render_task))
    print(f"2. {args.count:,} test digits, each way with its own random hand and pen")
    for name, rendered in (("long way", long_way), ("fast", fast_way)):
        images = np.concatenate([part for part, _ in rendered])
        ok = np.concatenate([good for _, good in rendered])
        scores = ", ".join(f"{model} {np.mean(onnx_probabilities(session, as_model_input(images[ok])).argmax(1) == labels[ok]):.2%}"
                           for model, session in sessions.items())
        print(f"   {name}: drawn {ok.mean():.1%}; " + ", ".join(f"{key} {value:.4f}" for key, value
                                                             in _statistics(images[ok]).items()) + f"; {scores}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
