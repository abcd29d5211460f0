"""What a generator trainer yields: progress events, then one final result.

Data flows one way: trainer -> events -> job manager / CLI -> UI / REST.
Every trainer yields zero or more `Progress` events and ends with exactly one
`Result` as its last item, so a consumer is a plain `for` loop:

    for event in spec.trainer()(options):
        if isinstance(event, Result): ...
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass
class Progress:
    progress: float  # 0-100, never decreasing within a run
    status: str  # human text, e.g. "Epoch 3/10, Batch 5/12"
    epoch: int | None = None  # 1-based
    epochs: int | None = None
    batch: int | None = None  # 1-based within the epoch
    batches: int | None = None
    loss: float | None = None  # running training loss
    accuracy: float | None = None  # running training accuracy (0-1)
    val_accuracy: float | None = None  # validation accuracy, at epoch ends (0-1)
    elapsed: float | None = None  # seconds since training started
    # Seconds the training data took to prepare (the canvas mix drawn or read from its cache, the
    # features), once it is ready: reported apart from the training time.
    data_seconds: float | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict without empty fields; `progress` is rounded for display."""
        data = {k: v for k, v in asdict(self).items() if v is not None}
        data["progress"] = round(float(self.progress), 1)
        for key in ("loss", "accuracy", "val_accuracy", "elapsed", "data_seconds"):
            if key in data:
                data[key] = round(float(data[key]), 4)
        return data


@dataclass
class Result:
    model: str  # registry name, e.g. "model1"
    test_accuracy: float  # on the 10,000 MNIST test images (0-1)
    train_seconds: float  # wall time of the training itself (not data loading or export)
    paths: dict[str, str] = field(default_factory=dict)  # "native", "onnx", "metadata" -> file path
    metadata: dict[str, Any] = field(default_factory=dict)  # what was written to <model>.json
    # Wall time of preparing the training data (drawing the canvas mix on a first run, or reading it
    # from its cache; features), not part of train_seconds. None from a trainer that does not say.
    data_seconds: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)
