"""Seven-segment digits, a style MNIST lacks (the benchmarks' renderer: one copy, in benchmarks/)."""
from benchmarks.reading.segment_digits import DIGIT_SEGMENTS, segment_digit  # noqa: F401
