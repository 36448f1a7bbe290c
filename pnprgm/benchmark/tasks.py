"""Benchmark tasks: a degradation (operator spec) with its default measurement noise.

A benchmark task is named for the restoration task of its operator (``pnprgm.presets.TASKS``: ``sr``, ``deblur``,
``inpaint``, ``colorize``, ``denoise``), so the benchmark, the presets and the CLI speak of the same tasks. The
names ``sr4`` and ``color`` of before issue 19 stay accepted (with a notice).

The noise of every task can be replaced at once (``--noise``); the measurement of image ``i`` for a task is
drawn with a seed derived from the run seed, ``i`` and the task's seed key (:func:`measurement_seed`), so two runs
see identical measurements.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from pnprgm.config import hashed_seed
from pnprgm.registry import Registry


@dataclass(frozen=True)
class Task:
    """One benchmark task.

    :param spec: operator spec (``pnprgm operators``), built for each image's shape.
    :param noise: default Gaussian measurement noise std, in [0, 1] units.
    :param colour_only: the task needs colour ground truths (colorization); gray images are not run.
    :param seed_key: the name its measurement seeds are derived from, when not the task's own: the name it had when
        the committed results were measured (``sr`` was ``sr4``, ``colorize`` was ``color``), so that a rename
        changes no measurement, no seed and no resumable record.
    """

    spec: str
    noise: float
    colour_only: bool = False
    seed_key: Optional[str] = None

    def applies_to(self, channels: int) -> bool:
        """Whether an image with ``channels`` channels can be used for this task."""
        return channels == 3 or not self.colour_only


registry: Registry[Task] = Registry("benchmark task")
registry.add("sr", Task("sr4", 0.01, seed_key="sr4"), "4x super-resolution (spec sr4: 4x4 block mean), noise 0.01")
registry.add("deblur", Task("blur:gaussian,sigma=1.6", 0.01), "Gaussian deblurring (sigma 1.6 px), noise 0.01")
registry.add("inpaint", Task("mask:random,rate=0.5,seed=0", 0.01), "50 % random pixel inpainting, noise 0.01")
registry.add("colorize", Task("gray", 0.01, colour_only=True, seed_key="color"),
             "colorization from the channel mean, noise 0.01")
registry.add("denoise", Task("identity", 25 / 255), "Gaussian denoising, noise 25/255")
# Issue 19: the benchmark's task names are the presets' (pnprgm.presets.TASKS).
registry.alias("sr4", "sr", "the restoration task's name; its operator is still sr4")
registry.alias("color", "colorize", "the restoration task's name")


def measurement_seed(seed: int, image_index: int, task: str) -> int:
    """Seed of one measurement (and of the methods' randomness): a hash of (run seed, image index, the seed key of
    ``task``: its :attr:`Task.seed_key`, else its name; an old name gives the seed of today's).

    A hash rather than a sum keeps different (index, task) pairs from colliding for any run seed.
    """
    name = registry.canonical(task, notice=False)
    key = registry.get(name).seed_key or name
    return hashed_seed(f"{int(seed)}/{int(image_index)}/{key}", 31)
