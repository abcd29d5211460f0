"""Training options shared by every trainer (nanoGPT style: plain, commented defaults).

Each model module defines its own `DEFAULTS` (full run) and `QUICK` (a miniature
run for smoke tests and demos) as instances of this class.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, fields, replace
from typing import Any


@dataclass(frozen=True)
class TrainOptions:
    epochs: int = 5  # passes over the training split
    batch_size: int = 128  # mini-batch size
    learning_rate: float = 1e-3  # initial step size (the schedule is the model's own)
    limit: int | None = None  # use only the first N training images (quick runs); None = all
    seed: int = 0  # makes data order, augmentation and initialisation repeatable
    # Issue 12 (training/personal.py): mix the corrected drawings (DRAWINGS_DB) into the training data,
    # weighted so a few dozen count against 60,000 MNIST digits; fine_tune continues from the serving
    # model on the drawings and an MNIST sample, in seconds.
    include_drawings: bool = False
    fine_tune: bool = False

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def updated(self, **changes: Any) -> "TrainOptions":
        """A copy with `changes` applied; None values mean "keep the default"."""
        return replace(self, **{k: v for k, v in changes.items() if v is not None})

    def validate(self) -> "TrainOptions":
        """Raise ValueError with a user-facing message when an option is out of range."""
        if not 1 <= self.epochs <= 100:
            raise ValueError(f"epochs must be between 1 and 100, got {self.epochs}")
        if not 1 <= self.batch_size <= 10_000:
            raise ValueError(f"batch_size must be between 1 and 10000, got {self.batch_size}")
        if not 0 < self.learning_rate <= 10:
            raise ValueError(f"learning_rate must be in (0, 10], got {self.learning_rate}")
        if self.limit is not None and not 100 <= self.limit <= 60_000:
            raise ValueError(f"limit must be between 100 and 60000 (or empty for all), got {self.limit}")
        if self.fine_tune and not self.include_drawings:
            raise ValueError("fine_tune continues the serving model on your drawings: "
                             "set include_drawings too ({\"include_drawings\": true, \"fine_tune\": true})")
        return self

    @classmethod
    def field_names(cls) -> list[str]:
        return [f.name for f in fields(cls)]


def resolve_options(options: "TrainOptions | dict | None", defaults: TrainOptions) -> TrainOptions:
    """What a trainer runs with: `defaults` for None, defaults updated by a dict, validated."""
    if options is None:
        options = defaults
    elif isinstance(options, dict):
        unknown = set(options) - set(TrainOptions.field_names())
        if unknown:
            raise ValueError(f"unknown option(s): {', '.join(sorted(unknown))}")
        options = defaults.updated(**options)
    return options.validate()
