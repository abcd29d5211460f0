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
        # The spring integrated on Python floats, x and y apart: the same operations in the same order
        # as on 2-element numpy arrays (so the same drawings), without numpy's per-call cost on
        # two numbers (~7 s of the drawn sets' ~18,000 drawings, in the trainer's process).
        stiffness, damping = float(writer.stiffness), float(writer.damping)
        x, y = float(via[0, 0]), float(via[0, 1])
        vx = vy = 0.0
        path = [(x, y)]
        for index in range(1, len(via)):
            tx, ty = float(via[index, 0]), float(via[index, 1])
            reach = writer.reach / 3.0 if index == len(via) - 1 else writer.reach
            for _ in range(MAX_STEPS):
                vx += (stiffness * (tx - x) - damping * vx) * DT
                vy += (stiffness * (ty - y) - damping * vy) * DT
                x += vx * DT
                y += vy * DT
                path.append((x, y))
                if _hypot(tx - x, ty - y) < reach:
                    break
        out.append(path)
    return out


_hypot = np.hypot  # numpy's, as before on the arrays (math.hypot may round the last bit differently)


def ellipse(centre, radii, start: float, turns: float, count: int = 10):
    """Via-points around an ellipse from angle `start` (radians, y down: positive turns clockwise on screen)."""
    angle = start + 2 * np.pi * turns * np.linspace(0.0, 1.0, count)
    return [(centre[0] + radii[0] * np.cos(a), centre[1] + radii[1] * np.sin(a)) for a in angle]
