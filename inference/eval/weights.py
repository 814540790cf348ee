"""Loading an evaluation network from a local file in either of the forms they are published in."""

from __future__ import annotations

import pickle
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn


def load_network(
    path: str | Path, device: str, build: Callable[[dict[str, torch.Tensor]], nn.Module], missing: str
) -> tuple[nn.Module, bool]:
    """A TorchScript file, or a state dict that ``build`` turns into a module; returns (module in eval mode
    on ``device``, whether it is TorchScript). ``missing`` is the message when the file does not exist."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: {missing}")
    try:
        return torch.jit.load(str(path), map_location=device).eval(), True
    except RuntimeError:  # not TorchScript: a state dict
        pass
    try:
        state = torch.load(str(path), map_location="cpu", weights_only=True)
        if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
            raise ValueError("it holds no state dict of tensors")
        net = build(state)
        net.load_state_dict(state)
    except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError, KeyError) as e:
        first = str(e).strip().splitlines()[0][:200] if str(e).strip() else type(e).__name__
        raise ValueError(f"{path}: not a TorchScript model nor a weights file this network loads ({first})") from e
    return net.to(device).eval(), False
