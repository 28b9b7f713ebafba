"""One place that opens ONNX Runtime sessions quietly on the right device."""

from __future__ import annotations

import onnxruntime

from anoncli.device import onnx_providers

_ERRORS_ONLY = 3


def open_session(model: bytes | str, device: str) -> onnxruntime.InferenceSession:
    options = onnxruntime.SessionOptions()
    options.log_severity_level = _ERRORS_ONLY
    return onnxruntime.InferenceSession(model, sess_options=options, providers=onnx_providers(device))
