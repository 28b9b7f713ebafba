"""The One-Euro filter (Casiez, Roussel & Vogel 2012): a low-pass filter whose cutoff rises with speed, so a
still point stops jittering and a moving one does not lag. Used on face meshes that follow a video track."""

from __future__ import annotations

import math

import numpy as np


def smoothing_factor(cutoff: float | np.ndarray, step: float) -> float | np.ndarray:
    """The exponential smoothing factor of a first-order low-pass at `cutoff` Hz sampled every `step` seconds."""
    time_constant = 1.0 / (2 * math.pi * cutoff)
    return 1.0 / (1.0 + time_constant / step)


class OneEuroFilter:
    """Filters an array of values sampled every `step` seconds, element by element.

    `min_cutoff` (Hz) is the cutoff at rest: lower, less jitter. `beta` raises it with the speed (values per
    second, divided by `scale` so that one setting suits faces of every size): higher, less lag. The speed
    itself is low-passed at `speed_cutoff` Hz.
    """

    def __init__(self, step: float, min_cutoff: float, beta: float, speed_cutoff: float = 1.0) -> None:
        self.step = step
        self.min_cutoff = min_cutoff
        self.beta = beta
        self.speed_alpha = smoothing_factor(speed_cutoff, step)
        self.value: np.ndarray | None = None
        self.speed: np.ndarray | None = None

    def __call__(self, value: np.ndarray, scale: float = 1.0) -> np.ndarray:
        value = np.asarray(value, np.float64)
        if self.value is None or self.value.shape != value.shape:
            self.value, self.speed = value.copy(), np.zeros_like(value)
            return value.copy()
        speed = (value - self.value) / self.step
        self.speed = self.speed + self.speed_alpha * (speed - self.speed)
        cutoff = self.min_cutoff + self.beta * np.abs(self.speed) / scale
        self.value = self.value + smoothing_factor(cutoff, self.step) * (value - self.value)
        return self.value.copy()
