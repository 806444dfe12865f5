"""When a Triton kernel runs, and when its PyTorch reference runs instead.

Every kernel in `swiftlite/kernels/` is opt-in: nothing changes until `use_triton(True)` (or the
environment variable `SWIFTLITE_TRITON=1` at start-up). Even then a kernel runs only where it can:

- Triton must be installed (`pip install "swiftlite[triton]"`);
- its tensors must be on a CUDA GPU, **or** Triton's interpreter must be on: `TRITON_INTERPRET=1` in
  the environment *before* the kernel file is imported. Triton reads that variable when `@triton.jit`
  decorates a function, i.e. when `swiftlite/kernels/<file>.py` is imported, so setting it later has
  no effect on kernels already defined. The interpreter runs a kernel on CPU tensors with numpy, one
  program at a time: slow, but every load, store and mask is checked on this CPU;
- the interpreter has no bfloat16.

Otherwise the dispatcher runs the PyTorch reference and says why once (one `warnings.warn` per
kernel and reason), so a run is never silently slower or different in kind.
"""
from __future__ import annotations

import os
import warnings
from typing import Any

_enabled = os.environ.get("SWIFTLITE_TRITON", "0") == "1"  # the global switch (off by default)
_warned: set[tuple[str, str]] = set()


class use_triton:
    """Turn the Triton paths on or off: `use_triton(True)` for the rest of the process, or
    `with use_triton(True): ...` for a block (the previous setting comes back after it)."""

    def __init__(self, enabled: bool = True) -> None:
        global _enabled
        if not isinstance(enabled, bool):
            raise TypeError(f"use_triton(enabled): expected True or False, got {enabled!r}")
        self.previous, _enabled = _enabled, enabled

    def __enter__(self) -> "use_triton":
        return self

    def __exit__(self, *exc: Any) -> None:
        global _enabled
        _enabled = self.previous


def triton_enabled() -> bool:
    """Is the global switch on? (The kernels may still fall back; see `why_not_triton`.)"""
    return _enabled


def import_triton() -> tuple[Any, Any]:
    """(triton, triton.language), or (None, None) when Triton is not installed."""
    try:
        import triton
        import triton.language as tl
    except ImportError:
        return None, None
    return triton, tl


def interpreter_requested() -> bool:
    """Is `TRITON_INTERPRET=1` set now?"""
    return os.environ.get("TRITON_INTERPRET", "0").lower() in ("1", "true", "on", "yes")


class KernelFile:
    """What a kernel file knows when it is imported: is Triton there, and was the interpreter on then?
    Each kernel file makes one (`KERNELS = KernelFile(__name__)`) before it defines its kernels."""

    def __init__(self, module_name: str) -> None:
        self.module_name = module_name
        self.triton, self.tl = import_triton()
        self.interpreted = self.triton is not None and interpreter_requested()

    def why_not(self, *tensors: Any) -> str | None:
        """Why this file's Triton kernels cannot run on `tensors` (None: they can)."""
        import torch

        if self.triton is None:
            return "Triton is not installed (pip install 'swiftlite[triton]')"
        on_gpu = all(t.is_cuda for t in tensors if isinstance(t, torch.Tensor))
        if not on_gpu and not self.interpreted:
            return (f"the tensors are not on a CUDA GPU and TRITON_INTERPRET=1 was not set when {self.module_name} "
                    f"was imported (set it before importing swiftlite to run Triton's interpreter on the CPU)")
        if self.interpreted and any(isinstance(t, torch.Tensor) and t.dtype == torch.bfloat16 for t in tensors):
            return "Triton's interpreter has no bfloat16"
        return None

    def use(self, kernel: str, *tensors: Any) -> bool:
        """True when the switch is on and the Triton kernel can run; else False, warning once per reason."""
        if not _enabled:
            return False
        reason = self.why_not(*tensors)
        if reason is None:
            return True
        if (kernel, reason) not in _warned:
            _warned.add((kernel, reason))
            warnings.warn(f"swiftlite.kernels: {kernel} runs its PyTorch reference: {reason}", stacklevel=3)
        return False
