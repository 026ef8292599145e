"""Unit-test session setup.

Without a GPU, Triton kernels (workloads/serve/decode_attention.py) run under Triton's
interpreter on CPU tensors. Triton reads TRITON_INTERPRET when it is first imported, so it is
set here, before any test module imports it; on a CUDA machine the kernels compile for real.
"""

from __future__ import annotations

import os

import torch

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")
