"""PNG plots of the benchmark results (matplotlib, Agg backend: no display needed)."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from benchmarks.outcome import SectionResult

OURS_COLOUR, BASELINE_COLOUR = "#2b6cb0", "#c05621"


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def draw(section: SectionResult, out: Path) -> list[str]:
    """Write the section's plots into `out`; returns the names written."""
    painters = {
        "robustness": [("robustness.png", _robustness), ("robustness_examples.png", _robustness_examples)],
        "inference": [("inference_speed.png", _inference)],
        "rest": [("rest_load.png", _rest)],
        "training": [("training_curves.png", _training)],
        "explain": [("explain_deletion.png", _explain_deletion)],
    }.get(section.name, [])
    written = []
    plt = _pyplot()
    for filename, paint in painters:
        figure = paint(plt, section)
        if figure is None:
            continue
        figure.savefig(out / filename, dpi=110, bbox_inches="tight")
        plt.close(figure)
        written.append(filename)
    return written


def _robustness(plt, section: SectionResult):
    data = section.data
    variants = list(data["variants"])
    figure, axes = plt.subplots(1, 2, figsize=(12, 4.2), sharey=True)
    positions = np.arange(len(variants))
    for axis, model in zip(axes, ("model2", "model1")):
        ours = [100 * data["variants"][v]["ours"][model] for v in variants]
        naive = [100 * data["variants"][v]["naive"][model] for v in variants]
        axis.bar(positions - 0.2, ours, 0.4, label="our preprocessing", color=OURS_COLOUR)
        axis.bar(positions + 0.2, naive, 0.4, label="naive (original app)", color=BASELINE_COLOUR)
        axis.axhline(100 * data["plain"][model], color="black", linestyle="--", linewidth=1,
                     label=f"plain MNIST ({100 * data['plain'][model]:.1f}%)")
        axis.set_xticks(positions, [v.replace("_", "\n") for v in variants], fontsize=8)
        axis.set_title({"model2": "Model 2 (CNN)", "model1": "Model 1 (logistic regression)"}[model])
        axis.set_ylim(0, 100)
        axis.grid(axis="y", alpha=0.3)
    axes[0].set_ylabel(f"accuracy on {data['samples']:,} drawn test digits (%)")
    for axis in axes:
        axis.legend(loc="upper center", bbox_to_anchor=(0.5, -0.2), ncol=3, fontsize=8, frameon=False)
    figure.suptitle("MNIST test digits drawn on a 280x280 canvas")
    return figure


def _robustness_examples(plt, section: SectionResult):
    examples = section.extras.get("examples")
    if not examples:
        return None
    figure, axes = plt.subplots(3, len(examples), figsize=(1.6 * len(examples), 5.2))
    for column, (variant, canvas, ours, naive) in enumerate(examples):
        canvas = np.asarray(canvas)
        if canvas.ndim == 3 and canvas.shape[2] == 4:
            # Show the transparent layer as the user saw it: over a checkerboard-free light grey.
            alpha = canvas[:, :, 3:4] / 255.0
            canvas = (canvas[:, :, :3] * alpha + 220 * (1 - alpha)).astype(np.uint8)
        axes[0, column].imshow(canvas, cmap="gray", vmin=0, vmax=255)
        axes[1, column].imshow(ours[:, :, 0], cmap="gray", vmin=0, vmax=1)
        axes[2, column].imshow(naive[:, :, 0], cmap="gray", vmin=0, vmax=1)
        axes[0, column].set_title(variant.replace("_", " "), fontsize=9)
        for row in range(3):
            axes[row, column].set_xticks([])
            axes[row, column].set_yticks([])
    axes[0, 0].set_ylabel("canvas", fontsize=9)
    axes[1, 0].set_ylabel("ours 28x28", fontsize=9)
    axes[2, 0].set_ylabel("naive 28x28", fontsize=9)
    figure.suptitle("What each model sees")
    return figure


def _inference(plt, section: SectionResult):
    timings = section.data["timings"]
    labels, values, colours = [], [], []
    for model, engines in timings.items():
        for engine, by_batch in engines.items():
            for key, timing in by_batch.items():
                labels.append(f"{model} {engine}, batch {key[1:]}")
                values.append(timing["per_image_s"] * 1e6)
                colours.append(OURS_COLOUR if engine == "onnxruntime" else BASELINE_COLOUR)
    figure, axis = plt.subplots(figsize=(9, 0.35 * len(labels) + 1.2))
    positions = np.arange(len(labels))[::-1]
    axis.barh(positions, values, color=colours)
    axis.set_yticks(positions, labels, fontsize=8)
    axis.set_xscale("log")
    axis.set_xlabel("median time per image (microseconds, log scale)")
    for position, value in zip(positions, values):
        axis.text(value * 1.05, position, f"{value:,.0f} us" if value >= 10 else f"{value:.1f} us",
                  va="center", fontsize=7)
    axis.set_title("Inference per image: onnxruntime (blue) vs native (orange)")
    axis.grid(axis="x", alpha=0.3)
    return figure


def _rest(plt, section: SectionResult):
    figure, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    ours = section.data.get("ours") or {}
    every = ours.get("all_models")
    if every:  # "model": "all" on the same server (issue 21), drawn dashed in our colour
        every = {"label": f'{ours["label"]}, "model": "all"', "levels": every["levels"]}
    for data, colour, style in ((ours, OURS_COLOUR, "o-"), (every, OURS_COLOUR, "s--"),
                                (section.data.get("baseline"), BASELINE_COLOUR, "o-")):
        if not data:
            continue
        clients = [int(c) for c in data["levels"]]
        levels = list(data["levels"].values())
        left.plot(clients, [level["throughput_rps"] for level in levels], style, color=colour, label=data["label"])
        right.plot(clients, [level["p50_ms"] for level in levels], style, color=colour, label=f"{data['label']} p50")
        right.plot(clients, [level["p99_ms"] for level in levels], style[0] + ":", color=colour,
                   label=f"{data['label']} p99")
    levels = sorted({int(c) for key in ("ours", "baseline") for c in section.data.get(key, {}).get("levels", {})})
    for axis in (left, right):
        axis.set_xscale("log", base=2)
        axis.set_xticks(levels, [str(level) for level in levels])
        axis.minorticks_off()
        axis.set_yscale("log")
        axis.set_xlabel("concurrent keep-alive clients")
        axis.grid(alpha=0.3, which="both")
    left.set_ylabel("requests/s")
    left.set_title('Throughput (/predict, Model 2 and "all")')
    right.set_ylabel("latency (ms)")
    right.set_title("Latency")
    left.legend(fontsize=8)
    right.legend(fontsize=7)
    return figure


def _training(plt, section: SectionResult):
    models = [name for name in ("model1", "model2") if name in section.data]
    if not models:
        return None
    figure, axes = plt.subplots(1, len(models), figsize=(5.5 * len(models), 4), squeeze=False)
    for axis, name in zip(axes[0], models):
        record = section.data[name]
        epochs = record["epochs"]
        if epochs:
            axis.plot([e["elapsed"] for e in epochs], [100 * e["val_accuracy"] for e in epochs], "o-",
                      color=OURS_COLOUR, label="validation accuracy per epoch")
        axis.axhline(100 * record["test_accuracy"], color="black", linestyle="--", linewidth=1,
                     label=f"test accuracy {100 * record['test_accuracy']:.2f}%")
        target = record.get("target", {}).get("accuracy")
        if target:
            axis.axhline(100 * target, color=BASELINE_COLOUR, linestyle=":", linewidth=1.2,
                         label=f"target {100 * target:.1f}%")
        axis.set_xlim(left=0)
        axis.set_title(f"{name}: {record['train_seconds']:.1f} s training, {record['wall_seconds']:.0f} s wall")
        axis.set_xlabel("wall seconds since the trainer started")
        axis.set_ylabel("accuracy (%)")
        axis.grid(alpha=0.3)
        axis.legend(fontsize=8, loc="lower right")
    return figure


def _explain_deletion(plt, section: SectionResult):
    """Deletion curves of each model's default maps against the reference orders, per set."""
    data = section.data.get("faithfulness") or {}
    panels = [(name, set_name, record["deletion"][record["default"]][set_name], record["default"])
              for name, record in data.items() for set_name in record["deletion"][record["default"]]]
    if not panels:
        return None
    figure, axes = plt.subplots(1, len(panels), figsize=(3.2 * len(panels), 3.2), sharey=True, squeeze=False)
    styles = {"map": ("-", OURS_COLOUR), "ink": ("--", "#555555"), "random": (":", "#888888"),
              "reverse": ("-.", BASELINE_COLOUR)}
    for axis, (name, set_name, record, method) in zip(axes[0], panels):
        for order, (style, colour) in styles.items():
            curve = record["curves"][order]
            label = f"{method.replace('_', ' ')} map" if order == "map" else f"{order} order"
            axis.plot(np.linspace(0, 100, len(curve)), curve, style, color=colour,
                      label=f"{label} ({record[order]:.2f})")
        axis.set_title(f"{name}, {set_name}", fontsize=9)
        axis.set_xlabel("pixels erased (%)")
        axis.grid(alpha=0.3)
        axis.legend(fontsize=6.5)
    axes[0][0].set_ylabel("probability of the digit read")
    return figure
