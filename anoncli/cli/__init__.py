"""The command line. `run` is the `anoncli` program; it parses options and calls the Python API
(`anoncli.api`)."""

from __future__ import annotations

import os
import signal


def _stop_as_interrupted(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def run() -> None:
    # NumPy's BLAS threads only serve tiny matrices here (Kalman filters), yet their spinning competes with
    # ONNX Runtime and x264 for the cores; one BLAS thread is faster overall. Set for this program only (not
    # on import), before NumPy loads.
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    # A scheduler's SIGTERM stops a run as Ctrl-C does: finished files stay, the report says what is left.
    signal.signal(signal.SIGTERM, _stop_as_interrupted)
    from anoncli.cli.main import app

    app()
