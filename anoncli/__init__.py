"""anoncli: find faces in images and videos and anonymize them."""

import os

# NumPy's BLAS threads only serve tiny matrices here (Kalman filters), yet their spinning competes with
# ONNX Runtime and x264 for the cores; one BLAS thread is faster overall. Must be set before NumPy loads.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

__version__ = "0.1.0"
