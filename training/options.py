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
