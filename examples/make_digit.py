"""Draw examples/digit.png: a handwritten 3 as the app's Draw canvas makes it.

    python examples/make_digit.py            # rewrites examples/digit.png (the committed one)

The Draw tab's sketchpad is a 280x280 white canvas with a round black pen, 14 px by
default (ui/draw_tab.py BRUSH_SIZES), antialiased by the browser. The pen is drawn here
the same way: round caps and joins (a disc at every point of a densely sampled stroke) at
4x the size, then reduced with a Lanczos filter, which gives the soft 1-2 px edge a
browser's canvas has. The strokes are a person's 3 (two bowls, a slight slant), not a
rendered font, so the examples exercise preprocessing as a real drawing does.
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

CANVAS = 280  # px, the Draw tab's canvas
PEN = 14  # px, the Draw tab's default brush
SUPERSAMPLE = 4
OUT = Path(__file__).resolve().parent / "digit.png"

# One continuous stroke, as drawn with a mouse: the top bowl, the waist, the bottom bowl.
# (x, y) control points on the 280 px canvas; Catmull-Rom curves run through them.
STROKE = [(92, 74), (118, 58), (152, 56), (178, 70), (182, 96), (166, 120), (138, 134), (126, 137),
          (150, 142), (180, 158), (192, 186), (182, 214), (154, 230), (118, 230), (88, 214)]


def catmull_rom(points: list[tuple[float, float]], samples: int = 40) -> np.ndarray:
    """A smooth curve through `points` (the ends repeated so it starts and ends on them)."""
    p = np.asarray([points[0], *points, points[-1]], dtype=float)
    t = np.linspace(0, 1, samples, endpoint=False)[:, None]
    parts = []
    for i in range(1, len(p) - 2):
        p0, p1, p2, p3 = p[i - 1], p[i], p[i + 1], p[i + 2]
        parts.append(0.5 * ((2 * p1) + (-p0 + p2) * t + (2 * p0 - 5 * p1 + 4 * p2 - p3) * t ** 2
                            + (-p0 + 3 * p1 - 3 * p2 + p3) * t ** 3))
    return np.vstack([*parts, p[-2][None]])


def draw_digit() -> Image.Image:
    size, scale = CANVAS * SUPERSAMPLE, SUPERSAMPLE
    image = Image.new("L", (size, size), 255)
    pen = ImageDraw.Draw(image)
    radius = PEN * scale / 2
    for x, y in catmull_rom(STROKE) * scale:  # a disc per sample: a round pen, round ends
        pen.ellipse((x - radius, y - radius, x + radius, y + radius), fill=0)
    return image.resize((CANVAS, CANVAS), Image.LANCZOS).convert("RGB")


def main() -> int:
    out = Path(sys.argv[1]) if len(sys.argv) > 1 else OUT
    draw_digit().save(out, optimize=True)
    print(f"wrote {out} ({out.stat().st_size:,} bytes)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
