"""How private and how faithful an anonymized video is, frame by frame against its original.

Exposed faces and frames: the faces the original shows (found by the reference detector) that the anonymized
frame still exposes by the rule of `evaluation.exposure`, and the frames holding one. A face is exposed when its
region changed at most twice as much as re-encoding changed the background, or when the reference detector finds
a face there again and dlib re-identifies it within a threshold calibrated on the frame itself (the least of
dlib's 0.6, the distance to the nearest other person in the frame and to a blank patch of the face's size), not
by dlib's 0.6 alone, which a black or smeared patch meets on small, dark faces. The calibration is reported with
them (the median threshold, and the shares of faces a blank patch and another person lie within 0.6 of), and
so is each exposed face: its frame, its box, and whether it was left unchanged.

Temporal flicker: tOF, the mean difference between the optical flow (Farneback) of consecutive anonymized
frames and of the original's, over the frame and over the faces alone, where anonymization can flicker. Plus
the stream's bitrate ratio and whether frame rate, frame count and duration match.
"""

from __future__ import annotations

import time
from functools import partial
from pathlib import Path

import cv2
import numpy as np

from anoncli.detectors import Detector
from anoncli.evaluation.exposure import Calibration, calibrate, calibration_summary, exposed, region_unchanged
from anoncli.evaluation.faces import background_change, background_mask, core_change, found_again
from anoncli.faces import Face
from anoncli.io.video import decode_frames, probe_video
from anoncli.metrics.identity import FaceEmbedder

FLOW_SIDE = 480  # optical flow on frames at most this wide: flicker shows at any size, and flow is slow


def _gray(rgb: np.ndarray) -> np.ndarray:
    scale = min(1.0, FLOW_SIDE / rgb.shape[1])
    gray = cv2.cvtColor(np.ascontiguousarray(rgb), cv2.COLOR_RGB2GRAY)
    if scale < 1.0:
        gray = cv2.resize(gray, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
    return gray


def _flow(previous: np.ndarray, current: np.ndarray) -> np.ndarray:
    return cv2.calcOpticalFlowFarneback(previous, current, None, 0.5, 3, 15, 3, 5, 1.2, 0)


def _face_map(shape: tuple[int, int], faces: list[Face], scale: float) -> np.ndarray:
    mask = np.zeros(shape, bool)
    for face in faces:
        x1, y1, x2, y2 = (round(v * scale) for v in face.box)
        mask[max(y1, 0) : max(y2, 0), max(x1, 0) : max(x2, 0)] = True
    return mask


def _identity_distance(embedder: FaceEmbedder, original: np.ndarray, image: np.ndarray, face: Face) -> float:
    return float(np.linalg.norm(original - embedder.embed(image, face.box)))


def _exposed_in_frame(
    before: np.ndarray,
    after: np.ndarray,
    faces: list[Face],
    embeddings: list[np.ndarray],
    calibrations: list[Calibration],
    reference: Detector,
    embedder: FaceEmbedder,
) -> list[tuple[Face, bool]]:
    """The faces of an original frame that its anonymized copy exposes, each with whether it was left unchanged."""
    moved = background_change(before, after, background_mask(before.shape[:2], faces))
    changes = [core_change(before, after, face) for face in faces]
    unchanged = [region_unchanged(change, moved) for change in changes]
    # An unchanged face is exposed whatever is found there, so the anonymized frame is searched only when a face
    # in it changed (detection is slow), and only around the original's faces; unsearched, nothing is found.
    searched = reference.detect_near(after, [face.box for face in faces]) if not all(unchanged) else []
    found = found_again(faces, searched)
    return [
        (face, still)
        for face, embedding, calibration, change, is_found, still in zip(
            faces, embeddings, calibrations, changes, found, unchanged
        )
        if exposed(change, moved, is_found, partial(_identity_distance, embedder, embedding, after, face), calibration)
    ]


def evaluate_video(original: Path, anonymized: Path, reference: Detector, embedder: FaceEmbedder) -> dict:
    """Every figure for one pair of videos (frames paired by order)."""
    started = time.perf_counter()
    before_info, after_info = probe_video(original), probe_video(anonymized)
    frames = faces_seen = exposed_frames = frames_with_faces = 0
    flicker, face_flicker, calibrations, exposed_list = [], [], [], []
    previous: tuple[np.ndarray, np.ndarray] | None = None
    pairs = zip(decode_frames(original), decode_frames(anonymized))
    for before_frame, after_frame in pairs:
        before = before_frame.upright_rgb(before_info.rotation)
        after = after_frame.upright_rgb(after_info.rotation)
        frames += 1
        faces = reference.detect(before)
        embeddings = [embedder.embed(before, face.box) for face in faces]
        frame_calibrations = calibrate(before, faces, embeddings, embedder)
        shown = _exposed_in_frame(before, after, faces, embeddings, frame_calibrations, reference, embedder)
        for face, unchanged in shown:
            box = [round(float(v), 1) for v in face.box]
            exposed_list.append({"frame": frames - 1, "box": box, "unchanged": unchanged})
        calibrations += frame_calibrations
        faces_seen += len(faces)
        exposed_frames += bool(shown)
        frames_with_faces += bool(faces)
        grays = (_gray(before), _gray(after))
        if previous is not None:
            difference = np.linalg.norm(_flow(previous[0], grays[0]) - _flow(previous[1], grays[1]), axis=2)
            flicker.append(float(difference.mean()))
            inside = _face_map(difference.shape, faces, grays[0].shape[1] / before.shape[1])
            if inside.any():
                face_flicker.append(float(difference[inside].mean()))
        previous = grays
    return {
        "original": str(original),
        "anonymized": str(anonymized),
        "frames": frames,
        "frames_with_faces": frames_with_faces,
        "faces": faces_seen,
        "exposed_frames": exposed_frames,
        "exposed_faces": len(exposed_list),
        "exposed_unchanged": sum(face["unchanged"] for face in exposed_list),
        **calibration_summary(calibrations),
        "exposed": exposed_list,  # which faces: frame index, box, and whether the region was left unchanged
        "tof": float(np.mean(flicker)) if flicker else 0.0,
        "tof_faces": float(np.mean(face_flicker)) if face_flicker else 0.0,
        "bitrate_in": before_info.bitrate,
        "bitrate_out": after_info.bitrate,
        "bitrate_ratio": after_info.bitrate / before_info.bitrate if before_info.bitrate else float("nan"),
        "fps_in": str(before_info.fps),
        "fps_out": str(after_info.fps),
        "fps_match": before_info.fps == after_info.fps,
        "frames_match": before_info.frames == after_info.frames,
        "duration_in": round(before_info.duration, 3),
        "duration_out": round(after_info.duration, 3),
        "duration_match": abs(before_info.duration - after_info.duration) <= 1.0 / float(before_info.fps or 25),
        "seconds_per_frame": (time.perf_counter() - started) / frames if frames else 0.0,
    }
