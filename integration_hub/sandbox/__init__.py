"""The sandbox world: stand-in business systems for the demo, the tests and the benchmarks.

Only the CLI and the tests import this package; the pipeline reaches these systems over
their APIs exactly as it would reach the real ones.
"""
