"""How hard to look for faces: `--coverage fast|balanced|strict`, from one detector at its own threshold to the
union of RetinaFace and CenterFace at thresholds chosen for recall, dark images also with raised contrast.

For an anonymizer the costs are not symmetric: a false alarm blurs a patch of jacket, a miss publishes a
person. The thresholds of `strict` were chosen on the tuning photos of `tests/data/crowd_boxes.jsonl` (see
docs/results.md, "Coverage").
"""

from __future__ import annotations

from dataclasses import dataclass

from anoncli.detectors import DEFAULT_DETECTOR, Detector, create_detector
from anoncli.detectors.fused import FusedDetector


@dataclass(frozen=True)
class CoveragePlan:
    # Detector name → its settings (threshold; max_upscale, 0 for the whole-image pass only; upscale_pixels;
    # global_side); a setting left out is the detector's own.
    detectors: dict[str, dict[str, float]]
    # Detectors that also search dark images with raised contrast (see `fused.DARK_LUMA`).
    low_light: tuple[str, ...] = ()


# CenterFace adds the larger faces RetinaFace misses (turned heads, faces cut by the edge, dim faces) from its
# whole-image pass; its upscaled pass would find little more at twice the cost of all the rest. In strict,
# RetinaFace looks at a large photo at its own resolution (faces from about 16 px) and upscales only a photo
# small enough that the copy stays within 2 MP: on the tuning photos, upscaling large photos covered no further
# face, cost half the detection time and added false alarms; a small photo's copy is cheap and finds 6-px faces.
COVERAGE_PLANS = {
    "fast": CoveragePlan({DEFAULT_DETECTOR: {}}),
    "balanced": CoveragePlan({"retinaface": {}, "centerface": {"threshold": 0.3, "max_upscale": 0.0}}),
    "strict": CoveragePlan(
        {"retinaface": {"threshold": 0.3, "upscale_pixels": 2e6}, "centerface": {"threshold": 0.1, "max_upscale": 0.0}},
        low_light=("centerface",),
    ),
}
DEFAULT_COVERAGE = "strict"
# Settings where the smaller of the plan's and the caller's (a video's cheaper search) wins.
AT_MOST = ("max_upscale", "global_side", "upscale_pixels")


def create_face_detector(
    coverage: str = DEFAULT_COVERAGE,
    detector: str | None = None,
    threshold: float | None = None,
    confirm: bool = True,
    **options: object,
) -> Detector | FusedDetector:
    """The detector a coverage plan describes. `detector` replaces the plan's detectors by that one (with its
    own settings), and `threshold` the plan's thresholds; `options` (device, scales) go to every detector.
    `confirm` False skips the closer look at large detections, for callers that cover every detection alike."""
    if coverage not in COVERAGE_PLANS:
        raise ValueError(f"unknown coverage {coverage!r}; choose one of: {', '.join(COVERAGE_PLANS)}")
    plan = COVERAGE_PLANS[coverage]
    chosen = {detector: {}} if detector is not None else plan.detectors
    detectors = []
    for name, planned in chosen.items():
        settings = {**options, **planned}
        for key in AT_MOST:
            if key in planned and key in options:
                settings[key] = min(planned[key], options[key])
        if threshold is not None:
            settings["threshold"] = threshold
        found = create_detector(name, **settings)
        found.confirms_large_faces = found.confirms_large_faces and confirm
        detectors.append(found)
    low_light = [found for name, found in zip(chosen, detectors) if name in plan.low_light]
    if len(detectors) == 1 and not low_light:
        return detectors[0]
    return FusedDetector(detectors, low_light)
