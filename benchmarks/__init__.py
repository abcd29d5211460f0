"""Benchmarks and the renderings of MNIST digits they (and the tests) share."""
