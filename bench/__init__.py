"""Benchmarks: throughput of the training loop against the bare model, whole-run costs."""
