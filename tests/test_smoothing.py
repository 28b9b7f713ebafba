"""The One-Euro filter and a video track's face mesh smoothed by it: jitter goes, motion stays."""

from __future__ import annotations

import numpy as np

from anoncli.anonymizers.meshed import TrackMesh
from anoncli.composites.mesh import FaceMesher, Similarity
from anoncli.smoothing import OneEuroFilter

STEP = 1 / 25


def acceleration(series: list[np.ndarray]) -> float:
    points = np.stack(series)
    return float(np.abs(points[2:] - 2 * points[1:-1] + points[:-2]).mean())


def test_a_still_value_stops_jittering():
    noise = np.random.default_rng(0).normal(0, 1, (100, 10))  # points of a 100-px face jittering by a pixel
    smoother = OneEuroFilter(STEP, min_cutoff=1.0, beta=1.0)
    smoothed = [smoother(10 + sample, scale=100) for sample in noise]
    assert acceleration(smoothed[10:]) < acceleration(list(noise[10:])) / 5


def test_speed_raises_the_cutoff_so_a_moving_value_keeps_up():
    ramp = [np.array([2.0 * i]) for i in range(50)]  # 50 units a second
    lags = {}
    for beta in (0.0, 1.0):
        smoother = OneEuroFilter(STEP, min_cutoff=1.0, beta=beta)
        lags[beta] = float(ramp[-1][0] - [smoother(value) for value in ramp][-1][0])
    assert 0 < lags[1.0] < lags[0.0] / 5


def test_a_track_mesh_follows_the_head_exactly_and_smooths_only_the_shape(astronaut, detector):
    face = max(detector.detect(astronaut), key=lambda f: f.size)
    mesh = FaceMesher().fit(astronaut, face.box)
    track, rng = TrackMesh(STEP, 1.0, 1.0), np.random.default_rng(1)
    moved_exactly, noisy, smoothed = [], [], []
    for frame in range(40):
        angle = np.radians(frame)  # the head turns, nods, nears and moves across the frame
        turn = np.array([[np.cos(angle), 0, np.sin(angle)], [0, 1, 0], [-np.sin(angle), 0, np.cos(angle)]])
        pose = Similarity(1 + frame / 100, turn, np.array([5.0 * frame, 2.0 * frame, 0.0]))
        posed = pose.apply(mesh)
        if frame < 20:
            moved_exactly.append(np.abs(track(posed, face.size) - posed).max())
            continue
        jittered = pose.apply(mesh + rng.normal(0, 1.0, mesh.shape).astype(np.float32))
        noisy.append(pose.undo(jittered))
        smoothed.append(pose.undo(track(jittered, face.size)))
    assert max(moved_exactly) < 0.05  # pixels: rigid motion passes through without lag
    assert acceleration(smoothed[5:]) < acceleration(noisy[5:]) / 3
