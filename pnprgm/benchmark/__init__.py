"""Benchmarks: restoration methods x tasks x images, scored under one metric protocol (``pnprgm benchmark``).

>>> from pnprgm.benchmark import BenchmarkConfig, run_benchmark
>>> results = run_benchmark(BenchmarkConfig(tasks=("sr4",), methods=("baseline", "tv-admm"), crop=64, limit=2),
...                         json_path="results.json", md_path="results.md", figure_path="grid.png")

``tasks.registry``, ``methods.registry`` and ``datasets.registry`` list what can be benchmarked.
"""
from __future__ import annotations

from pnprgm.benchmark.runner import BenchmarkConfig, BenchmarkResults, build_config, run_benchmark

__all__ = ["BenchmarkConfig", "BenchmarkResults", "build_config", "run_benchmark"]
