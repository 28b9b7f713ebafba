"""The RetinaFace graph run in torch (the CUDA path) finds what ONNX Runtime finds, and gradients reach the
image."""

from __future__ import annotations

import numpy as np
import torch

from anoncli.detectors import create_detector
from anoncli.detectors.retinaface_net import RetinaFaceNet
from conftest import ANNOTATED, load_rgb


def test_torch_and_onnx_backends_find_the_same_faces_in_a_group_photo(detector):
    image = load_rgb(next(iter(sorted(ANNOTATED.glob("*.jpg")))))
    through_torch = create_detector("retinaface", device="cpu", backend="torch").detect(image)
    through_onnx = detector.detect(image)
    assert len(through_onnx) >= 3
    assert len(through_torch) == len(through_onnx)
    for a, b in zip(sorted(through_torch, key=lambda f: f.box), sorted(through_onnx, key=lambda f: f.box)):
        assert np.abs(np.subtract(a.box, b.box)).max() < 0.5
        assert abs(a.score - b.score) < 1e-3


def test_the_face_score_is_differentiable_with_respect_to_the_image(astronaut):
    network = RetinaFaceNet()
    image = torch.from_numpy(astronaut[:256, 96:352].copy()).permute(2, 0, 1)[None].float() / 127.5 - 1
    image.requires_grad_(True)
    _, face_probability, _ = network(image)
    assert face_probability.max() > 0.9
    face_probability.max().backward()
    assert image.grad is not None and image.grad.abs().sum() > 0
    assert not any(parameter.requires_grad for parameter in network.parameters())
