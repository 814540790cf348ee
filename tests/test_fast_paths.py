"""The fast paths (channels-last, regional compile, CUDA graphs) compute what the plain path computes.

On CPU the compile path runs through dynamo + AOTAutograd with the ``aot_eager`` backend (Inductor's C++
compile would take minutes here); Inductor and CUDA graphs are checked by the CUDA tests at the end, run
on the GPU machine, and by ``benchmarks/bench_fast.py`` at full size in bf16.
"""

import numpy as np
import pytest
import torch

from inference.pipeline import VidRDPipeline
from inference.prompts import VideoRequest
from inference.sampler import GuidedStep
from tests.helpers import collect, settings
from tests.tiny_sd import FRAMEWISE, UNET
from training.model.cuda_graphs import CUDAGraphed
from training.model.fast_paths import (
    TRAINING_PACK_LENGTH,
    FastPaths,
    apply_fast_paths,
    compile_regions,
    repeated_units,
    to_channels_last,
)
from training.model.group_norm import ChannelStatsGroupNorm, use_channel_stats_group_norm
from training.model.loading import unet_from_config
from training.model.temporal import TemporalSelfAttention

CPU_COMPILE = FastPaths(channels_last=False, compile=True, cuda_graphs=False, compile_backend="aot_eager")
# The training set of fast paths, with the compile that runs on CPU.
CPU_TRAINING = FastPaths(
    channels_last=False,
    pack_temporal_attention=16,
    channel_stats_group_norm=True,
    cuda_graphs=False,
    fuse_projections=False,
    compile_backend="aot_eager",
)


LAYOUTS = ["official", "framewise"]


def moved_unet(seed: int = 0, layout: str = "framewise") -> torch.nn.Module:
    """A tiny UNet whose temporal layers are not the identity (zero-init layers perturbed); eval mode, so the
    Temp-Convs' dropout does not make two runs differ (gradients still flow)."""
    torch.manual_seed(seed)
    unet = unet_from_config(dict(UNET), **{**FRAMEWISE, "layout": layout})
    with torch.no_grad():
        for p in unet.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    return unet.eval()


def inputs(b=2, f=4, seed=1):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(b, 4, f, 8, 8, generator=g), torch.tensor([10, 700])[:b], torch.randn(b, 7, 32, generator=g)


def test_defaults_are_on_for_cuda_only():
    assert FastPaths.for_device("cuda") == FastPaths()
    assert FastPaths().channels_last and FastPaths().compile and FastPaths().cuda_graphs
    assert not FastPaths().pack_temporal_attention and not FastPaths().channel_stats_group_norm  # not in sampling
    train = FastPaths.for_training("cuda")
    assert train.channels_last and train.compile and train.cuda_graphs  # graphs: the frozen text encoder only
    assert train.pack_temporal_attention == TRAINING_PACK_LENGTH and train.channel_stats_group_norm
    assert FastPaths().fuse_projections and not train.fuse_projections  # fused weights are for inference
    for make in (FastPaths.for_device, FastPaths.for_training):
        assert not make("cpu").any
        assert not make("cuda", enabled=False).any


@pytest.mark.parametrize("shape", [(3, 64, 5, 7), (2, 32, 3, 4, 5)])
@pytest.mark.parametrize("layout", ["contiguous", "channels_last"])
@pytest.mark.parametrize("affine", [True, False])
def test_group_norm_from_channel_statistics_equals_group_norm(shape, layout, affine):
    torch.manual_seed(0)
    x = torch.randn(*shape) * 3 + torch.linspace(-4, 4, shape[1]).view(1, -1, *[1] * (len(shape) - 2))
    if layout == "channels_last":
        x = x.contiguous(memory_format=torch.channels_last if x.dim() == 4 else torch.channels_last_3d)
    x.requires_grad_()
    ref, ours = torch.nn.GroupNorm(8, shape[1], affine=affine), torch.nn.GroupNorm(8, shape[1], affine=affine)
    if affine:
        with torch.no_grad():
            ref.weight.normal_()
            ref.bias.normal_()
    ours.load_state_dict(ref.state_dict())
    assert use_channel_stats_group_norm(ours) == 1 and isinstance(ours, ChannelStatsGroupNorm)
    assert ours.state_dict().keys() == ref.state_dict().keys()
    a, b = ref(x), ours(x)
    torch.testing.assert_close(b, a, atol=2e-5, rtol=1e-5)
    wrt = [x, *ref.parameters()]
    ga = torch.autograd.grad(a.sin().sum(), wrt)
    gb = torch.autograd.grad(b.sin().sum(), [x, *ours.parameters()])
    for u, v in zip(gb, ga, strict=True):
        torch.testing.assert_close(u, v, atol=1e-4, rtol=1e-4)
    with torch.no_grad():
        half = ours.to(torch.bfloat16)(x.detach().bfloat16())
    assert half.dtype == torch.bfloat16 and ((half.float() - a).norm() / a.norm()).item() < 0.01


def test_training_fast_paths_swap_group_norms_inside_compiled_units_only():
    unet = apply_fast_paths(moved_unet(), CPU_TRAINING)
    units = repeated_units(unet)
    in_units = {id(m) for u in units for m in u.modules()}
    norms = [m for m in unet.modules() if isinstance(m, torch.nn.GroupNorm)]
    assert any(isinstance(m, ChannelStatsGroupNorm) for m in norms)
    assert all(isinstance(m, ChannelStatsGroupNorm) == (id(m) in in_units) for m in norms)
    assert type(unet.conv_norm_out) is torch.nn.GroupNorm  # eager: GroupNorm's own kernel is the fast one there
    attns = [m for m in unet.modules() if isinstance(m, TemporalSelfAttention)]
    assert attns and all(a.pack_length == 16 for a in attns)
    # Without compile the GroupNorm swap is left out (it only pays inside compiled code).
    eager = apply_fast_paths(
        moved_unet(),
        FastPaths(channels_last=False, channel_stats_group_norm=True, compile=False, fuse_projections=False),
    )
    assert not any(isinstance(m, ChannelStatsGroupNorm) for m in eager.modules())


@pytest.mark.parametrize("layout", LAYOUTS)
def test_channels_last_unet_equals_plain_and_feeds_nhwc(layout):
    plain = moved_unet(layout=layout)
    fast = to_channels_last(moved_unet(layout=layout))
    assert fast.conv_in.weight.is_contiguous(memory_format=torch.channels_last)
    conv3d = fast.down_blocks[0].temp_convs[0].convs[-1].weight
    assert conv3d.is_contiguous(memory_format=torch.channels_last_3d)
    seen = []
    nhwc = torch.channels_last
    fast.conv_in.register_forward_pre_hook(lambda m, a: seen.append(a[0].is_contiguous(memory_format=nhwc)))
    x, t, c = inputs()
    with torch.no_grad():
        a, b = plain(x, t, c), fast(x, t, c)
    assert seen == [True]
    assert (a - b).abs().max().item() < 1e-5


def test_spatial_transformer_keeps_the_callers_layout_or_the_models():
    from training.model.units import AttnTempUnit

    unet = moved_unet(layout="official")
    unit = unet.down_blocks[0].attn_units[0]
    assert isinstance(unit, AttnTempUnit)
    x, ctx = torch.randn(6, 32, 4, 4), torch.randn(2, 7, 32)
    with torch.no_grad():
        a = unit(x, ctx, 3)
        b = unit(x.contiguous(memory_format=torch.channels_last), ctx, 3)
    assert a.is_contiguous() and b.is_contiguous(memory_format=torch.channels_last)
    assert (a - b).abs().max().item() < 1e-6 and (a - x).abs().max().item() > 1e-3
    # A channels-last model hands NHWC on even for an NCHW input.
    to_channels_last(unet)
    with torch.no_grad():
        c = unit(x, ctx, 3)
    assert c.is_contiguous(memory_format=torch.channels_last) and not c.is_contiguous()
    assert (a - c).abs().max().item() < 1e-6


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("training_set", [False, True], ids=["sampling-set", "training-set"])
def test_compiled_regions_give_the_same_forward_and_gradients(training_set, layout):
    plain, fast = moved_unet(layout=layout), moved_unet(layout=layout)
    if training_set:
        apply_fast_paths(fast, CPU_TRAINING)  # + packed Temp-Attn rows and channel-statistics GroupNorm
        n = len(repeated_units(fast))
    else:
        n = compile_regions(fast, backend="aot_eager")
    units = repeated_units(fast)
    assert n == len(units) and n > 10
    assert all(u._compiled_call_impl is not None for u in units)
    assert {type(u).__name__ for u in units} == {"ResTempUnit", "AttnTempUnit", "Downsample2D", "Upsample2D"}
    plain.set_trainable()
    fast.set_trainable()
    x, t, c = inputs()
    plain(x, t, c).square().mean().backward()
    fast(x, t, c).square().mean().backward()
    grads = {n: p.grad for n, p in plain.named_parameters() if p.requires_grad}
    assert grads
    for name, p in fast.named_parameters():
        if name in grads:
            assert torch.allclose(p.grad, grads[name], atol=1e-5, rtol=1e-4), name
        else:
            assert p.grad is None, name


def test_pipeline_switch_same_video(ckpt):
    plain = VidRDPipeline.from_checkpoint(str(ckpt), fast=False)
    assert not plain.fast.any and isinstance(plain.step, GuidedStep) and plain.step.denoiser is plain.unet
    default_cpu = VidRDPipeline.from_checkpoint(str(ckpt))
    assert not default_cpu.fast.any  # on by default only on CUDA
    fast = VidRDPipeline.from_checkpoint(
        str(ckpt), fast=FastPaths(channels_last=True, compile=True, cuda_graphs=False, compile_backend="aot_eager")
    )
    assert fast.unet.memory_format == torch.channels_last
    assert fast.unet.down_blocks[0].res_units[0]._compiled_call_impl is not None
    req = [VideoRequest(["a red square"])]
    a, b = collect(plain, req, settings(frames=12)), collect(fast, req, settings(frames=12))
    assert a.shape == b.shape == (1, 12, 32, 32, 3)
    assert np.abs(a.astype(int) - b.astype(int)).max() <= 1


def test_graphed_denoiser_passes_through_off_cuda():
    calls = []

    def den(x, t, c):
        calls.append(x.shape)
        return x * 2

    g = CUDAGraphed(den)
    x = torch.ones(1, 4, 2, 3, 3)
    assert torch.equal(g(x, torch.tensor([5]), torch.zeros(1, 2, 3)), x * 2)
    assert calls == [x.shape] and g.num_graphs == 0


def test_fused_attention_projections_compute_the_same_and_share_the_weights():
    from diffusers.models.attention_processor import Attention, FusedAttnProcessor2_0

    from tests.tiny_sd import VAE
    from training.model.fused_projections import fuse_attention_projections
    from training.model.loading import vae_from_config
    from training.model.video_cross_attention import PerVideoCrossAttnProcessor

    plain, fused = moved_unet().eval(), moved_unet().eval()
    with pytest.raises(ValueError, match="for inference"):
        fuse_attention_projections(fused)  # trainable: gradients would miss the original layers
    fused.requires_grad_(False)
    params_before = sum(p.numel() for p in fused.parameters())
    n = fuse_attention_projections(fused)
    attns = [m for m in fused.modules() if isinstance(m, Attention)]
    assert n == len(attns) > 0 and fuse_attention_projections(fused) == 0  # once only
    cross = [a for a in attns if a.is_cross_attention]
    assert cross and all(isinstance(a.processor, PerVideoCrossAttnProcessor) for a in cross)
    assert all(isinstance(a.processor, FusedAttnProcessor2_0) for a in attns if not a.is_cross_attention)
    # The separate layers are views of the fused weight: no second copy, and loading into either reaches both.
    a = attns[0]
    assert a.to_k.weight.data_ptr() == a.to_qkv.weight.data_ptr() + a.to_q.weight.numel() * a.to_q.weight.element_size()
    with torch.no_grad():
        a.to_k.weight.add_(1.0)
    assert torch.equal(a.to_qkv.weight[a.to_q.out_features : 2 * a.to_q.out_features], a.to_k.weight)
    with torch.no_grad():
        a.to_k.weight.sub_(1.0)
    storage = {p.untyped_storage().data_ptr() for p in fused.parameters()}
    assert len(storage) < sum(1 for _ in fused.parameters())  # shared storage, not new memory
    assert sum(p.numel() for p in fused.parameters()) > params_before  # (numel counts the views twice)
    x, t, c = inputs()
    with torch.no_grad():
        torch.testing.assert_close(fused(x, t, c), plain(x, t, c), rtol=1e-5, atol=1e-5)

    torch.manual_seed(0)
    vae_plain = vae_from_config(dict(VAE)).eval().requires_grad_(False)
    vae_fused = vae_from_config(dict(VAE)).eval().requires_grad_(False)
    vae_fused.load_state_dict(vae_plain.state_dict())
    assert fuse_attention_projections(vae_fused) > 0
    video = torch.randn(1, 3, 3, 16, 16)
    with torch.no_grad():
        z = vae_plain.encode(video, sample=False)
        torch.testing.assert_close(vae_fused.encode(video, sample=False), z, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(vae_fused.decode(z), vae_plain.decode(z), rtol=1e-5, atol=1e-5)


def test_apply_fast_paths_off_changes_nothing():
    unet = moved_unet()
    before = {k: v.clone() for k, v in unet.state_dict().items()}
    apply_fast_paths(unet, FastPaths.off())
    assert unet.memory_format == torch.contiguous_format
    assert all(u._compiled_call_impl is None for u in repeated_units(unet))
    assert all(torch.equal(before[k], v) and v.is_contiguous() for k, v in unet.state_dict().items())


cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (run on the device machine)")


@cuda
def test_cuda_graph_replay_equals_eager_and_follows_new_inputs():
    unet = moved_unet().cuda().eval().requires_grad_(False)
    g = CUDAGraphed(unet)
    x, t, c = (a.cuda() for a in inputs())
    with torch.no_grad():
        ref1, out1 = unet(x, t, c), g(x, t, c)
        x2, t2 = torch.randn_like(x), torch.tensor([999, 1], device="cuda")
        ref2, out2 = unet(x2, t2, c), g(x2, t2, c)
        g(x[:1], t[:1], c[:1])
    assert (out1 - ref1).abs().max().item() < 1e-4
    assert (out2 - ref2).abs().max().item() < 1e-4 and (out2 - out1).abs().max().item() > 1e-2
    assert g.num_graphs == 2


@cuda
@pytest.mark.parametrize("layout", LAYOUTS)
def test_inductor_fast_paths_match_plain_within_bf16_tolerance_on_cuda(layout):
    """Within bf16 tolerance: the fast bf16 output is no further from the fp32 result than the plain bf16 one
    is (up to a factor for different rounding order)."""
    ref = moved_unet(layout=layout).cuda().eval().requires_grad_(False)
    plain = moved_unet(layout=layout).cuda().to(torch.bfloat16).eval().requires_grad_(False)
    fast = moved_unet(layout=layout).cuda().to(torch.bfloat16).eval().requires_grad_(False)
    fast = apply_fast_paths(fast, FastPaths())
    den = CUDAGraphed(fast)
    x, t, c = (a.cuda() for a in inputs())
    with torch.no_grad():
        r = ref(x, t, c)
        a = plain(x.bfloat16(), t, c.bfloat16()).float()
        b = den(x.bfloat16(), t, c.bfloat16()).float()

    def err(y):
        return ((y - r).norm() / r.norm()).item()

    assert err(a) < 0.05
    assert err(b) <= 2 * err(a) + 1e-3, (err(a), err(b))


def test_training_module_applies_fast_paths_on_setup(monkeypatch):
    import lightning as L

    from training.unet_module import VidRDModule

    def module(fast: bool) -> VidRDModule:
        m = VidRDModule(fast=fast)
        m.trainer = L.Trainer(accelerator="cpu", logger=False, enable_checkpointing=False)
        return m

    on_cpu = module(fast=True)
    on_cpu.setup("fit")  # the default resolves to nothing on CPU
    assert not any(u._compiled_call_impl is not None for u in repeated_units(on_cpu.unet))

    seen = []

    def as_if_cuda(device, enabled=True):
        seen.append((torch.device(device).type, enabled))
        return CPU_TRAINING if enabled else FastPaths.off()

    monkeypatch.setattr(FastPaths, "for_training", staticmethod(as_if_cuda))
    plain, fast = module(fast=False), module(fast=True)
    plain.setup("fit")
    fast.setup("fit")
    fast.setup("validate")  # applied once
    assert seen == [("cpu", False), ("cpu", True), ("cpu", True)]
    assert all(u._compiled_call_impl is not None for u in repeated_units(fast.unet))
    assert any(isinstance(m, ChannelStatsGroupNorm) for m in fast.unet.modules())
    assert not any(u._compiled_call_impl is not None for u in repeated_units(plain.unet))
    z, ctx = torch.randn(2, 4, 4, 8, 8), plain.text(["a red square", "a blue square"])
    noise, t = torch.randn_like(z), torch.tensor([200, 700])
    plain.unet.eval(), fast.unet.eval()  # the Temp-Convs' dropout off: the two runs must see the same layers
    a, b = plain.denoising_loss(z, ctx, t, noise), fast.denoising_loss(z, ctx, t, noise)
    a.backward()
    b.backward()
    assert torch.allclose(a, b, atol=1e-6)
    ga = [p.grad for p in plain._trainable()]
    gb = [p.grad for p in fast._trainable()]
    assert all(torch.allclose(x, y, atol=1e-6, rtol=1e-4) for x, y in zip(ga, gb, strict=True))


def test_generate_cli_fast_mode_reaches_the_pipeline(ckpt, tmp_path, monkeypatch, capsys):
    from vidrd.cli import main

    seen = []
    real = VidRDPipeline.from_checkpoint.__func__

    def spy(cls, path, device="cpu", dtype=torch.float32, **kw):
        seen.append(kw["fast"])
        return real(cls, path, device, dtype, **kw)

    monkeypatch.setattr(VidRDPipeline, "from_checkpoint", classmethod(spy))
    small = ["--steps", "2", "--height", "32", "--width", "32", "--clip-frames", "4", "--prompt-frames", "2"]
    for k, extra in enumerate(([], ["--no-fast"], ["--fast", "compile"])):
        out = tmp_path / f"v{k}.gif"
        args = ["generate", "--checkpoint", str(ckpt), "--prompt", "a red square", "--frames", "4", *small]
        assert main([*args, *extra, "--out", str(out)]) == 0 and out.exists()
    assert seen == [FastPaths.off()] * 3  # the fast paths are CUDA only
    said = capsys.readouterr().out
    assert said.count("fast path: off (cpu") == 3 and "--fast compile is a no-op off CUDA" in said
    with pytest.raises(SystemExit) as e:  # argparse names the choices
        main(["generate", "--checkpoint", str(ckpt), "--prompt", "x", "--fast", "warp", "--out", "x.gif"])
    assert e.value.code == 2


@cuda
@pytest.mark.parametrize("layout", LAYOUTS)
def test_inductor_training_fast_paths_match_within_bf16_tolerance_on_cuda(layout):
    """Forward + backward of the training set (packed Temp-Attn rows, channel-statistics GroupNorm, Inductor)
    in bf16 is no further from fp32 than the plain bf16 step is, in the loss and in the gradients."""

    def step(unet, dtype):
        unet = unet.cuda().to(dtype)
        unet.set_trainable()
        x, t, c = (a.cuda() for a in inputs())
        loss = unet(x.to(dtype), t, c.to(dtype)).float().square().mean()
        loss.backward()
        return loss.item(), torch.cat([p.grad.float().flatten() for p in unet.trainable_parameters()])

    ref_loss, ref_g = step(moved_unet(layout=layout), torch.float32)
    plain_loss, plain_g = step(moved_unet(layout=layout), torch.bfloat16)
    fast = apply_fast_paths(moved_unet(layout=layout), FastPaths.for_training("cuda"))
    fast_loss, fast_g = step(fast, torch.bfloat16)

    def err(g):
        return ((g - ref_g).norm() / ref_g.norm()).item()

    # bf16 itself: the plain path's gradients are ~5% from fp32 on this model (measured 0.052-0.055, H200).
    assert abs(plain_loss - ref_loss) / ref_loss < 0.02 and err(plain_g) < 0.1
    assert abs(fast_loss - ref_loss) <= 2 * abs(plain_loss - ref_loss) + 1e-3 * ref_loss
    assert err(fast_g) <= 2 * err(plain_g) + 1e-3, (err(plain_g), err(fast_g))
