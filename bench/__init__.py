"""Benchmarks: run on loopback, report ratios measured side by side in one run."""
