"""Benchmarks: restoration methods x tasks x images, scored under one metric protocol (``pnprgm benchmark``).

>>> from pnprgm.benchmark import BenchmarkConfig, run_benchmark
>>> results = run_benchmark(BenchmarkConfig(tasks=("sr",), methods=("baseline", "tv-admm"), crop=64, limit=2),
...                         json_path="results.json", md_path="results.md", figure_path="grid.png")

``tasks.registry``, ``methods.registry`` and ``datasets.registry`` list what can be benchmarked. The runner is
imported on first use, so the task registry (the CLI's help) is read without loading torch.
"""
from __future__ import annotations

import importlib
from typing import Any

__all__ = ["BenchmarkConfig", "BenchmarkResults", "build_config", "run_benchmark"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        return getattr(importlib.import_module("pnprgm.benchmark.runner"), name)
    raise AttributeError(f"module 'pnprgm.benchmark' has no attribute {name!r}")
