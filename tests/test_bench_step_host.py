"""``benchmarks.bench_step_host``: the operator graph it times on tiny tensors is the real one, and its work and
memory figures scale as the step does."""

from __future__ import annotations

from benchmarks.bench_step_host import OpCount, fwd_bwd, measure, small_widths
from tests.helpers import TINY_EXAMPLE_UNET
from training.model.unet import VidRDUNet


def test_cutting_the_widths_keeps_every_operator():
    counts = []
    for config in (TINY_EXAMPLE_UNET, small_widths(TINY_EXAMPLE_UNET)):
        unet = VidRDUNet(**config).train()
        counter = OpCount()
        with counter:
            fwd_bwd(unet, 1, 2, 8, unet.config.cross_attention_dim)
        counts.append(counter.ops)
    # The same layers in the same order; autograd's bookkeeping varies by a few dozen operators from run to run.
    assert counts[1] > 500 and abs(counts[0] - counts[1]) <= 0.02 * counts[0]


def test_work_and_memory_grow_with_the_batch_and_the_host_time_does_not():
    one, four = (measure(TINY_EXAMPLE_UNET, batch, frames=4, latent=8, repeats=3) for batch in (1, 4))
    assert abs(one["ops"] - four["ops"]) <= 0.02 * one["ops"] and one["host_ms"] > 0
    assert abs(four["tflop"] - 4 * one["tflop"]) <= 0.011 and abs(four["saved_gib"] - 4 * one["saved_gib"]) <= 0.11
