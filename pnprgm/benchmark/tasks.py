"""Benchmark tasks: a degradation (operator spec) with its default measurement noise.

The noise of every task can be replaced at once (``--noise``); the measurement of image ``i`` for a task is
drawn with a seed derived from the run seed, ``i`` and the task name (:func:`measurement_seed`), so two runs
see identical measurements.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass

from pnprgm.registry import Registry


@dataclass(frozen=True)
class Task:
    """One benchmark task.

    :param spec: operator spec (``pnprgm operators``), built for each image's shape.
    :param noise: default Gaussian measurement noise std, in [0, 1] units.
    :param colour_only: the task needs colour ground truths (colorization); gray images are not run.
    """

    spec: str
    noise: float
    colour_only: bool = False

    def applies_to(self, channels: int) -> bool:
        """Whether an image with ``channels`` channels can be used for this task."""
        return channels == 3 or not self.colour_only


registry: Registry[Task] = Registry("benchmark task")
registry.add("sr4", Task("sr4", 0.01), "4x super-resolution (4x4 block mean), noise 0.01")
registry.add("deblur", Task("blur:gaussian,sigma=1.6", 0.01), "Gaussian deblurring (sigma 1.6 px), noise 0.01")
registry.add("inpaint", Task("mask:random,rate=0.5,seed=0", 0.01), "50 % random pixel inpainting, noise 0.01")
registry.add("color", Task("gray", 0.01, colour_only=True), "colorization from the channel mean, noise 0.01")
registry.add("denoise", Task("identity", 25 / 255), "Gaussian denoising, noise 25/255")


def measurement_seed(seed: int, image_index: int, task: str) -> int:
    """Seed of one measurement (and of the methods' randomness): a hash of (run seed, image index, task).

    A hash rather than a sum keeps different (index, task) pairs from colliding for any run seed.
    """
    digest = hashlib.sha256(f"{int(seed)}/{int(image_index)}/{task}".encode()).digest()
    return int.from_bytes(digest[:4], "little") & 0x7FFFFFFF
