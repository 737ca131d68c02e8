"""Benchmarks (``make bench``): speed and memory figures, never run by the test suite."""
