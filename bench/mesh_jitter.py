"""How much the face mesh that places a mesh method's new face jitters along a video track: raw FaceMesh fits,
and One-Euro smoothed (`anoncli.anonymizers.meshed.TrackMesh`) at several settings, the shipped one marked.

    .venv/bin/python bench/mesh_jitter.py VIDEO [--frames N]

The clip's faces are found and tracked as `anoncli video` does; FaceMesh is fitted on each confirmed face's crop
(the crop a mesh method gets). Per setting, over runs of consecutive frames where a track's mesh was fitted:
jitter, the mean frame-to-frame acceleration of the mesh points (face sizes per frame², what a viewer sees as
shaking), and lag, the mean distance of the smoothed points from the raw ones (face sizes).
"""

from __future__ import annotations

import argparse
from collections import defaultdict
from itertools import islice
from pathlib import Path

import numpy as np

from anoncli.anonymizers.meshed import MESH_BETA, MESH_MIN_CUTOFF, TrackMesh
from anoncli.api import face_finder
from anoncli.composites.mesh import FaceMesher, similarity
from anoncli.frames import face_crop
from anoncli.generative.geometry import CONTEXT
from anoncli.io.video import probe_video
from anoncli.pipeline.video import VideoSettings, track_video
from anoncli.regions import face_region

SETTINGS = ((0.5, 0.5), (1.0, 0.3), (1.0, 1.0), (1.0, 3.0), (2.0, 1.0), (3.0, 3.0))  # (min cutoff Hz, beta)

Run = list[tuple[np.ndarray, float]]  # consecutive frames of one track: mesh in the frame, face size


def track_meshes(video: Path, frames: int | None) -> list[Run]:
    """Each track's runs of consecutive fitted meshes, in frame coordinates, with the face size."""
    info = probe_video(video)
    finder = face_finder(device="cpu", video=True)
    mesher = FaceMesher()
    runs: dict[int, list[Run]] = defaultdict(list)
    last_seen: dict[int, int] = {}
    settings = VideoSettings()
    for tracked in islice(track_video(video, info, finder, settings), frames):
        height, width = tracked.payload.rgb.shape[:2]
        for track_id, entry in tracked.faces.items():
            if not entry.face.confirmed:
                continue
            region = face_region(entry.face, width, height, settings.mask_scale, CONTEXT)
            crop = face_crop(tracked.payload.rgb, region, entry.face, 0)
            mesh = mesher.fit(crop.pixels, crop.box)
            if mesh is None:
                continue
            if last_seen.get(track_id) != tracked.index - 1:
                runs[track_id].append([])
            last_seen[track_id] = tracked.index
            shift = np.array([region.x1, region.y1, 0.0], np.float32)
            runs[track_id][-1].append((mesh + shift, crop.face_size))
    return [run for track in runs.values() for run in track if len(run) >= 3]


def measure(runs: list[Run], step: float, setting: tuple[float, float] | None) -> tuple[float, float, float]:
    """Frame jitter, shape jitter (each mesh first aligned onto its run's first by a similarity, so that only
    the change of shape is left) and lag, for meshes smoothed by `smoothed` (raw when `setting` is None)."""
    frame_jitter, shape_jitter, lag = [], [], []
    for run in runs:
        track = TrackMesh(step, *setting) if setting else None
        points, shapes, sizes = [], [], []
        reference = run[0][0]
        for mesh, size in run:
            smoothed = track(mesh, size) if track else mesh
            points.append(smoothed[:, :2])
            shapes.append(similarity(smoothed, reference).apply(smoothed)[:, :2])
            sizes.append(size)
            lag.append(float(np.linalg.norm(smoothed[:, :2] - mesh[:, :2], axis=1).mean() / size))
        size = np.array(sizes)[1:-1]
        for series, into in ((np.stack(points), frame_jitter), (np.stack(shapes), shape_jitter)):
            acceleration = np.linalg.norm(series[2:] - 2 * series[1:-1] + series[:-2], axis=2).mean(axis=1)
            into.append(acceleration / size)
    return float(np.concatenate(frame_jitter).mean()), float(np.concatenate(shape_jitter).mean()), float(np.mean(lag))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("video", type=Path)
    parser.add_argument("--frames", type=int, default=None, help="only the first N frames")
    args = parser.parse_args()
    runs = track_meshes(args.video, args.frames)
    step = 1.0 / float(probe_video(args.video).fps)
    print(f"{args.video.name}: {len(runs)} runs, {sum(len(run) for run in runs)} fitted meshes")
    print(f"{'smoothing':<40}{'frame jitter':>14}{'shape jitter':>14}{'lag':>9}  (face sizes, per frame²)")
    shipped = (MESH_MIN_CUTOFF, MESH_BETA)
    for setting in (None, *dict.fromkeys((*SETTINGS, shipped))):
        frame_jitter, shape_jitter, lag = measure(runs, step, setting)
        name = "raw" if setting is None else f"min cutoff {setting[0]} Hz, beta {setting[1]}"
        name += " (shipped)" if setting == shipped else ""
        print(f"{name:<40}{frame_jitter:>14.4f}{shape_jitter:>14.4f}{lag:>9.4f}")


if __name__ == "__main__":
    main()
