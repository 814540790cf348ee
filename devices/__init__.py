"""Where tensors live and in what precision: the one device and dtype vocabulary every layer uses.

The bottom of the package graph (it imports none of the project's packages), and torch only inside its functions,
so a CLI's ``--help`` that names these choices loads nothing heavy.
"""

from __future__ import annotations

from typing import Any

AUTO = "auto"
# The names a command line or config file may give, short (``bf16``) and long (``bfloat16``) alike.
DTYPE_NAMES = ("bf16", "fp16", "fp32")
_DTYPE_ALIASES = {"bf16": "bfloat16", "bfloat16": "bfloat16", "fp16": "float16", "float16": "float16",
                  "half": "float16", "fp32": "float32", "float32": "float32", "float": "float32"}  # fmt: skip


def resolve_device(name: str | None = AUTO) -> str:
    """``auto`` (or None) -> ``cuda`` where a GPU is visible, else ``cpu``; any other name as given."""
    if name is None or name == AUTO:
        import torch

        return "cuda" if torch.cuda.is_available() else "cpu"
    return name


def dtype_name(name: str) -> str:
    """The torch attribute a precision name means (``bf16``/``bfloat16`` -> ``bfloat16``, ...), checked without
    importing torch (a config can refuse a bad name at once); ValueError naming the accepted ones otherwise."""
    if name not in _DTYPE_ALIASES:
        raise ValueError(f"dtype must be one of {', '.join(sorted(_DTYPE_ALIASES))}, got {name!r}")
    return _DTYPE_ALIASES[name]


def torch_dtype(name: str) -> Any:
    """The ``torch.dtype`` a precision name means (:func:`dtype_name`)."""
    import torch

    return getattr(torch, dtype_name(name))


def default_dtype(device: str) -> Any:
    """bf16 on a GPU, float32 elsewhere: what a run uses when no precision is given."""
    return torch_dtype("bf16" if str(device).startswith("cuda") else "fp32")


def model_dtype(name: str, device: str) -> Any:
    """``name``'s dtype on a GPU; float32 on a CPU, where half-precision kernels are slow or missing (the name is
    still checked)."""
    import torch

    dtype = torch_dtype(name)
    return dtype if str(device).startswith("cuda") else torch.float32
