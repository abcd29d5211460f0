"""A pen with inertia that follows via-points: the evaluation's own handwriting generator.

    strokes = write([[(0, 0), (1, 0), (0.5, 1)]], Writer.sample(rng), rng)

The evaluation drawings of writers' conventions (benchmarks/reading/written_conventions.py) and of
letters (benchmarks/reading/handwritten_letters.py) are written by this generator, which the
training mix never uses (training/conventions.py builds its variants from Bezier curves,
arcs and polylines; tests/test_conventions.py checks that the mix never calls this): a point
mass pulled towards each via-point in turn by a damped spring, moving on to the next one as
soon as it comes within `reach` of it. Corners come out rounded, with an overshoot where
the writer is fast, and every via-point is jittered per drawing: a hand, not a font.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

Strokes = list[list[tuple[float, float]]]


@dataclass(frozen=True)
class Writer:
    """One writer's hand (all lengths in units of the drawing's height)."""

    stiffness: float  # spring towards the current via-point, 1/s^2
    damping: float  # 1/s: below 2 * sqrt(stiffness) the pen overshoots
    reach: float  # the pen turns to the next via-point this close to the current one
    jitter: float  # standard deviation of each via-point's displacement
    slant: float  # x -= slant * (y - 0.5)
    aspect: float  # x scaled by this

    @classmethod
    def sample(cls, rng: np.random.Generator) -> "Writer":
        stiffness = rng.uniform(900.0, 1600.0)
        return cls(stiffness=stiffness, damping=2.0 * np.sqrt(stiffness) * rng.uniform(0.7, 1.0),
                   reach=rng.uniform(0.03, 0.08), jitter=rng.uniform(0.015, 0.04),
                   slant=rng.uniform(-0.3, 0.3), aspect=rng.uniform(0.8, 1.2))


DT = 0.002  # s per integration step
MAX_STEPS = 400  # per via-point: a pen that never arrives moves on


def write(via_strokes, writer: Writer, rng: np.random.Generator) -> Strokes:
    """Each stroke's via-points (x right, y down, about a unit box) written by `writer`."""
    out = []
    for via in via_strokes:
        via = np.asarray(via, np.float64).reshape(-1, 2)
        via = via + rng.normal(0.0, writer.jitter, via.shape)
        via[:, 0] = (via[:, 0] - writer.slant * (via[:, 1] - 0.5)) * writer.aspect
        if len(via) == 1:
            out.append([tuple(via[0])] * 2)
            continue
        position, velocity = via[0].copy(), np.zeros(2)
        path = [position.copy()]
        for index, target in enumerate(via[1:], start=1):
            last = index == len(via) - 1
            for _ in range(MAX_STEPS):
                velocity += (writer.stiffness * (target - position) - writer.damping * velocity) * DT
                position += velocity * DT
                path.append(position.copy())
                if np.hypot(*(target - position)) < (writer.reach / 3.0 if last else writer.reach):
                    break
        out.append([tuple(map(float, point)) for point in path])
    return out


def ellipse(centre, radii, start: float, turns: float, count: int = 10):
    """Via-points around an ellipse from angle `start` (radians, y down: positive turns clockwise on screen)."""
    angle = start + 2 * np.pi * turns * np.linspace(0.0, 1.0, count)
    return [(centre[0] + radii[0] * np.cos(a), centre[1] + radii[1] * np.sin(a)) for a in angle]
