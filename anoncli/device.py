"""Resolve `--device auto|cpu|cuda` once, for ONNX Runtime and torch alike."""

from __future__ import annotations

import shutil
from pathlib import Path

DEVICES = ("auto", "cpu", "cuda")


def cuda_available() -> bool:
    # Importing torch costs over a second; without an NVIDIA driver there is nothing for it to find.
    if not Path("/proc/driver/nvidia/version").exists() and shutil.which("nvidia-smi") is None:
        return False
    try:
        import torch
    except ImportError:
        return False
    return torch.cuda.is_available()


def resolve_device(device: str) -> str:
    """Return "cpu" or "cuda"; "auto" picks CUDA when torch sees a GPU."""
    if device not in DEVICES:
        raise ValueError(f"device must be one of {', '.join(DEVICES)}, got {device!r}")
    if device == "auto":
        return "cuda" if cuda_available() else "cpu"
    if device == "cuda" and not cuda_available():
        raise ValueError("--device cuda was asked for, but no CUDA device is available")
    return device


def onnx_providers(device: str) -> list[str]:
    """ONNX Runtime execution providers for a resolved device, CPU always last as fallback."""
    import onnxruntime

    available = onnxruntime.get_available_providers()
    if device == "cuda" and "CUDAExecutionProvider" in available:
        return ["CUDAExecutionProvider", "CPUExecutionProvider"]
    return ["CPUExecutionProvider"]
