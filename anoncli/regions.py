"""Where a face's replacement goes: the crop around it and the feathered elliptical mask inside that crop."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from anoncli.faces import Face, ellipse_distance_squared, ellipse_radii

# The feather runs outward from the scaled ellipse over this fraction of its radius, so the face itself is
# always fully covered and only the surroundings blend.
FEATHER = 0.25


@dataclass(frozen=True)
class Region:
    """A face's crop rectangle in the image and its mask over that crop."""

    x1: int
    y1: int
    x2: int
    y2: int
    mask: np.ndarray  # (y2 - y1, x2 - x1) float32 in [0, 1]

    @property
    def slices(self) -> tuple[slice, slice]:
        return slice(self.y1, self.y2), slice(self.x1, self.x2)


def face_region(face: Face, width: int, height: int, mask_scale: float, context: float) -> Region:
    """The crop of `context` × face size around the face (clipped to the image) and its feathered ellipse.

    The ellipse has the face box's proportions times `mask_scale`; `context` is widened when needed so the
    whole feathered ellipse fits.
    """
    centre_x, centre_y, radius_x, radius_y = ellipse_radii(face.box, mask_scale)
    half_side = max(context * face.size / 2, max(radius_x, radius_y) * (1 + FEATHER)) + 1
    x1 = int(np.clip(np.floor(centre_x - half_side), 0, width))
    y1 = int(np.clip(np.floor(centre_y - half_side), 0, height))
    x2 = int(np.clip(np.ceil(centre_x + half_side), 0, width))
    y2 = int(np.clip(np.ceil(centre_y + half_side), 0, height))
    distance = np.sqrt(ellipse_distance_squared(face.box, mask_scale, x1, y1, x2, y2))
    ramp = np.clip((1 + FEATHER - distance) / FEATHER, 0.0, 1.0)
    mask = ramp * ramp * (3 - 2 * ramp)  # smoothstep: no visible edge where the feather starts or ends
    return Region(x1, y1, x2, y2, mask.astype(np.float32))
