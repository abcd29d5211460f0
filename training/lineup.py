"""Words about the registered models, derived from the registry (issue 21 item 4).

The page headline, the Train tab, the MCP tool descriptions and the OpenAPI `model` field say
how many models there are and which, so a model added to training/registry.py shows up in every
one of them (they said "two models" / "both" until Model 3). Plain strings: no UI or API import.
"""
from __future__ import annotations

from typing import Mapping

from training.registry import ModelSpec

ALL = "all"  # REST's and MCP's "every model at once"
_NUMBER_WORDS = ("no", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten")


def count_words(count: int, noun: str = "model") -> str:
    """'three models', 'one model', '12 models'."""
    number = _NUMBER_WORDS[count] if count < len(_NUMBER_WORDS) else str(count)
    return f"{number} {noun}{'' if count == 1 else 's'}"


def join_words(words: list[str], last: str = "and") -> str:
    """'a', 'a and b', 'a, b and c'."""
    return words[0] if len(words) == 1 else f"{', '.join(words[:-1])} {last} {words[-1]}"


def kind(spec: ModelSpec) -> str:
    """What the model is, from its title: 'Model 3: modern CNN' -> 'modern CNN'."""
    return spec.title.split(":", 1)[-1].strip()


def headline(models: Mapping[str, ModelSpec]) -> str:
    """The page's first sentence: 'Draw a digit and three models read it as you draw: ...'."""
    kinds = join_words([kind(spec) for spec in models.values()])
    return f"Draw a digit and {count_words(len(models))} read it as you draw ({kinds})."


def model_choices(models: Mapping[str, ModelSpec], *, with_all: bool = True) -> str:
    """'"model1", "model2", "model3" or "all"' (the OpenAPI `model` field)."""
    names = [f'"{name}"' for name in models] + ([f'"{ALL}"'] if with_all else [])
    return join_words(names, "or")


def described_choices(models: Mapping[str, ModelSpec], default: str, *, with_all: bool = True) -> str:
    """Each model named with what it is, the default first; for tool descriptions (MCP)."""
    ordered = [default, *(name for name in models if name != default)] if default in models else list(models)
    words = [f"'{name}' ({kind(models[name])}{', the default' if name == default else ''})" for name in ordered]
    if with_all:
        words.append(f"'{ALL}' (every model at once: one answer per model)")
    return join_words(words, "or")
