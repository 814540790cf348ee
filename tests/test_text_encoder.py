"""The frozen text encoder replayed from CUDA graphs: the same embeddings as eager calls, per shape and state."""

from __future__ import annotations

import pytest
import torch

from training.model.cuda_graphs import CUDAGraphed
from training.model.tiny import tiny_components

cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
PROMPTS = [["a red square", "a blue circle moving left"], ["", "a green triangle"]]


def test_graphs_are_a_no_op_off_cuda_and_dropped_when_the_encoder_trains(tmp_path):
    text = tiny_components(tmp_path).text_encoder
    eager = [text(p) for p in PROMPTS]
    text.use_cuda_graphs()
    assert all(torch.equal(text(p), e) for p, e in zip(PROMPTS, eager, strict=True))
    assert text._graphed.num_graphs == 0  # CPU calls go straight through
    text.set_trainable(True)
    assert text._graphed is None and text(PROMPTS[0]).requires_grad
    text.use_cuda_graphs()  # asked again while it trains: still eager
    assert text._graphed is None


@cuda
@pytest.mark.parametrize("autocast", [False, True])
def test_graphed_encoder_gives_the_eager_embeddings(tmp_path, autocast):
    text = tiny_components(tmp_path).text_encoder.cuda()
    with torch.autocast("cuda", dtype=torch.bfloat16, enabled=autocast):
        eager = [text(p) for p in PROMPTS]
        text.use_cuda_graphs()
        graphed = [text(p) for p in PROMPTS]  # the second batch replays the graph the first captured
        again = text(PROMPTS[0])
    assert text._graphed.num_graphs == 1
    for g, e in zip(graphed, eager, strict=True):
        torch.testing.assert_close(g, e, rtol=0, atol=0)
    torch.testing.assert_close(again, eager[0], rtol=0, atol=0)  # and an earlier result was not overwritten
    with torch.inference_mode():  # validation: a graph of its own
        torch.testing.assert_close(text(PROMPTS[1]), eager[1], rtol=0, atol=0)
    assert text._graphed.num_graphs == 2


@cuda
def test_a_call_that_cannot_be_captured_runs_eagerly_with_a_warning():
    def waits(x: torch.Tensor) -> torch.Tensor:
        return x * float(x.sum())  # reads a GPU value on the host: not capturable

    g = CUDAGraphed(waits, eager_on_failure=True)
    x = torch.arange(4.0, device="cuda")
    with pytest.warns(RuntimeWarning, match="CUDA graph capture failed"):
        out = g(x)
    torch.testing.assert_close(out, waits(x))
    torch.testing.assert_close(g(x + 1), waits(x + 1))  # eager from then on, no second warning needed
    with pytest.raises(RuntimeError):
        CUDAGraphed(waits)(x)
