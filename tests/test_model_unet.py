"""VidRD UNet on a tiny SD-shaped config: the framewise layout equals SD frame by frame at init, the official
one pools ResNet statistics over frames and keeps the frame embedding; both mix frames once trained."""

import pytest
import torch

from tests.tiny_sd import FRAMEWISE, UNET, tiny_unet2d
from training.model.loading import load_into, unet_from_config
from training.model.unet import VidRDUNet, is_spatial_transformer, is_temporal


@pytest.fixture(scope="module")
def pair():
    base = tiny_unet2d().eval()
    unet = unet_from_config(dict(UNET), **FRAMEWISE).eval()
    load_into(unet, base.state_dict(), "unet")
    return base, unet


def inputs(b=2, f=5, seed=1):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(b, 4, f, 8, 8, generator=g)
    ctx = torch.randn(b, 7, 32, generator=g)
    return x, torch.tensor([10, 700])[:b], ctx


def test_fresh_model_is_sd_frame_by_frame(pair):
    base, unet = pair
    x, t, ctx = inputs()
    with torch.no_grad():
        y = unet(x, t, ctx)
        ref = torch.stack([base(x[:, :, i], t, ctx).sample for i in range(x.shape[2])], dim=2)
    assert y.shape == x.shape
    assert (y - ref).abs().max().item() < 1e-5


def test_frames_are_independent_at_init_and_interact_once_temporal_weights_move(pair):
    _, unet = pair
    x, t, ctx = inputs()
    x2 = x.clone()
    x2[:, :, 3] += 1.0
    with torch.no_grad():
        d0 = (unet(x, t, ctx)[:, :, 0] - unet(x2, t, ctx)[:, :, 0]).abs().max().item()
    assert d0 < 1e-6
    moved = unet_from_config(dict(UNET), **FRAMEWISE).eval()
    moved.load_state_dict(unet.state_dict())
    with torch.no_grad():
        moved.down_blocks[0].attentions[0].transformer_blocks[0].temp_attn.to_out[0].weight.normal_(0, 0.1)
        moved.down_blocks[0].temp_convs[0].convs[-1].weight.normal_(0, 0.1)
        d1 = (moved(x, t, ctx)[:, :, 0] - moved(x2, t, ctx)[:, :, 0]).abs().max().item()
    assert d1 > 1e-3


def test_any_frame_count_and_scalar_timestep(pair):
    _, unet = pair
    for f in (1, 3, 8):
        x = torch.randn(1, 4, f, 8, 8)
        with torch.no_grad():
            assert unet(x, 500, torch.randn(1, 7, 32)).shape == x.shape


def test_gradients_reach_only_the_trainable_groups(pair):
    _, unet = pair
    unet = unet_from_config(dict(UNET), **FRAMEWISE)
    unet.set_trainable()
    x, t, ctx = inputs(b=1)
    unet(x, t[:1], ctx[:1]).square().mean().backward()
    for n, p in unet.named_parameters():
        trainable = is_temporal(n) or is_spatial_transformer(n)
        assert p.requires_grad == trainable, n
        if not trainable:
            assert p.grad is None, n
    # zero-init output layers get gradient first; through them the rest of each temporal module learns
    assert unet.down_blocks[0].attentions[0].transformer_blocks[0].temp_attn.to_out[0].weight.grad.abs().sum() > 0
    assert unet.up_blocks[1].temp_convs[0].convs[-1].weight.grad.abs().sum() > 0
    assert unet.down_blocks[0].attentions[0].transformer_blocks[0].attn2.to_k.weight.grad.abs().sum() > 0


def test_parameter_counts_add_up(pair):
    _, unet = pair
    c = unet.parameter_counts()
    assert c["total"] == sum(p.numel() for p in unet.parameters())
    assert c["trainable"] == c["temporal"] + c["spatial_transformer"]
    assert c["temporal"] == sum(p.numel() for p in unet.temporal_parameters())
    assert c["trainable"] == sum(p.numel() for p in unet.trainable_parameters())


def test_gradient_checkpointing_gives_the_same_gradients(pair):
    _, ref = pair
    grads = []
    for ckpt in (False, True):
        unet = unet_from_config(dict(UNET), **FRAMEWISE)
        unet.load_state_dict(ref.state_dict())
        with torch.no_grad():
            for p in unet.temporal_parameters():
                p.add_(0.01)
        if ckpt:
            unet.enable_gradient_checkpointing()
        x, t, ctx = inputs(b=1)
        torch.manual_seed(0)  # the Temp-Convs' dropout draws the same masks (checkpointing replays its RNG)
        unet(x, t[:1], ctx[:1]).square().mean().backward()
        grads.append(torch.cat([p.grad.flatten() for p in unet.temporal_parameters()]))
    assert torch.allclose(grads[0], grads[1], atol=1e-6)


def test_bf16_forward_is_finite_and_close(pair):
    _, unet = pair
    x, t, ctx = inputs(b=1)
    with torch.no_grad():
        ref = unet(x, t[:1], ctx[:1])
        low = unet.to(torch.bfloat16)(x.bfloat16(), t[:1], ctx[:1].bfloat16()).float()
    unet.float()
    assert torch.isfinite(low).all()
    assert (low - ref).abs().mean() < 0.05 * ref.abs().mean()


def test_save_and_load_pretrained_round_trip(pair, tmp_path):
    _, unet = pair
    unet.save_pretrained(tmp_path / "unet")
    assert (tmp_path / "unet" / "diffusion_pytorch_model.safetensors").exists()
    back = VidRDUNet.from_pretrained(tmp_path / "unet")
    assert back.config.layout == "framewise" and back.config.temp_conv_layers == 4
    for (n, a), (_, b) in zip(unet.state_dict().items(), back.state_dict().items(), strict=True):
        assert torch.equal(a, b), n


def test_unsupported_block_type_is_a_clear_error():
    with pytest.raises(ValueError, match="unsupported block type"):
        VidRDUNet(down_block_types=("SimpleCrossAttnDownBlock2D",), up_block_types=("UpBlock2D",))


def test_sliced_temporal_attention_equals_one_call():
    from training.model.attention_kernels import sliced_sdpa

    q, k, v = (torch.randn(10, 2, 8, 16, requires_grad=True) for _ in range(3))
    whole = torch.nn.functional.scaled_dot_product_attention(q, k, v)
    sliced = sliced_sdpa(q, k, v, max_sequences=3)  # 4 slices, the last one short
    torch.testing.assert_close(sliced, whole)
    g_whole = torch.autograd.grad(whole.square().sum(), (q, k, v))
    g_sliced = torch.autograd.grad(sliced.square().sum(), (q, k, v))
    for a, b in zip(g_sliced, g_whole, strict=True):
        torch.testing.assert_close(a, b)


def test_packed_temporal_attention_equals_one_row_per_pixel():
    from training.model.attention_kernels import block_diagonal_mask, sequences_per_row
    from training.model.temporal import TemporalSelfAttention

    assert sequences_per_row(48, 8, 64) == 8 and sequences_per_row(48, 8, 128) == 16
    assert sequences_per_row(12, 8, 128) == 4  # the largest power of two dividing the count
    assert sequences_per_row(7, 8, 128) == 1 and sequences_per_row(64, 16, 8) == 1  # nothing to pack
    mask = block_diagonal_mask(3, 2, torch.device("cpu"))
    assert mask.shape == (6, 6) and mask[:3, :3].all() and not mask[:3, 3:].any() and mask.sum() == 18

    torch.manual_seed(0)
    attn = TemporalSelfAttention(32, heads=4)
    torch.nn.init.normal_(attn.to_out[0].weight, std=0.05)  # not the zero init: the output depends on q, k and v
    x = torch.randn(24, 6, 32, requires_grad=True)
    rows = attn(x)
    g_rows = torch.autograd.grad(rows.square().sum(), (x, attn.to_q.weight, attn.to_v.weight))
    attn.pack_length = 24  # 4 sequences of 6 frames per row
    packed = attn(x)
    g_packed = torch.autograd.grad(packed.square().sum(), (x, attn.to_q.weight, attn.to_v.weight))
    torch.testing.assert_close(packed, rows)
    for a, b in zip(g_packed, g_rows, strict=True):
        torch.testing.assert_close(a, b)
    # A sequence only sees its own frames: changing one pixel's frames changes no other pixel's output.
    with torch.no_grad():
        x2 = x.clone()
        x2[5] += 1.0
        moved = (attn(x2) - packed).abs().amax(dim=(1, 2))
    assert moved[5] > 1e-3 and moved[torch.arange(24) != 5].max() == 0


def test_text_attends_once_per_video_and_equals_the_per_frame_context(pair):
    from diffusers.models.attention_processor import AttnProcessor2_0

    from training.model.video_cross_attention import PerVideoCrossAttnProcessor, cross_attentions

    unet = unet_from_config(dict(UNET), **FRAMEWISE).eval()  # eval: the Temp-Convs' dropout is off
    unet.load_state_dict(pair[1].state_dict())
    with torch.no_grad():
        for p in unet.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    attns = cross_attentions(unet)
    assert attns and all(isinstance(a.processor, PerVideoCrossAttnProcessor) for a in attns)
    seen = []
    attns[0].register_forward_pre_hook(
        lambda m, a, kw: seen.append(kw["encoder_hidden_states"].shape[0]), with_kwargs=True
    )
    x, t, ctx = inputs(b=2, f=5)
    unet.set_trainable()
    per_video = unet(x, t, ctx)
    g_video = torch.autograd.grad(per_video.square().sum(), list(unet.trainable_parameters()))
    assert seen == [2]  # the context was not repeated per frame

    for a in attns:  # SD's own processor: the UNet falls back to repeating the context per frame
        a.set_processor(AttnProcessor2_0())
    per_frame = unet(x, t, ctx)
    g_frame = torch.autograd.grad(per_frame.square().sum(), list(unet.trainable_parameters()))
    assert seen == [2, 10]
    torch.testing.assert_close(per_video, per_frame)
    for a, b in zip(g_video, g_frame, strict=True):
        torch.testing.assert_close(a, b)


def test_per_video_cross_attention_refuses_a_context_that_does_not_divide_the_frames():
    from diffusers.models.attention_processor import Attention

    from training.model.video_cross_attention import PerVideoCrossAttnProcessor

    attn = Attention(16, cross_attention_dim=8, heads=2, dim_head=8)
    attn.set_processor(PerVideoCrossAttnProcessor())
    same = attn(torch.randn(6, 4, 16), encoder_hidden_states=torch.randn(6, 3, 8))  # one context per row
    assert same.shape == (6, 4, 16)
    with pytest.raises(ValueError, match="whole number of frames"):
        attn(torch.randn(5, 4, 16), encoder_hidden_states=torch.randn(2, 3, 8))


def test_a_context_batch_that_is_not_one_row_per_video_is_a_clear_error(pair):
    _, unet = pair
    x, t, ctx = inputs(b=2, f=6)
    with pytest.raises(ValueError, match="3 rows for 2 videos"):
        unet(x, t, torch.cat([ctx, ctx[:1]]))  # 12 frames / 3 rows would divide: must not pass silently


def test_units_run_every_layer_once_and_stay_out_of_the_state_dict(pair):
    import copy

    _, unet = pair
    layers = {id(m) for b in unet.modules() for name in ("resnets", "temp_convs", "attentions")
              for m in (getattr(b, name, None) or [])}  # fmt: skip
    in_units = [id(m) for b in unet.modules() for u in [*getattr(b, "res_units", []), *getattr(b, "attn_units", [])]
                for m in u.children()]  # fmt: skip
    assert sorted(in_units) == sorted(layers) and len(set(in_units)) == len(in_units)
    assert not any("units" in k for k in unet.state_dict())
    # A copy's units run the copy's layers, not the original's.
    twin = copy.deepcopy(unet)
    assert twin.up_blocks[1].res_units[0].resnet is twin.up_blocks[1].resnets[0]
    assert twin.up_blocks[1].attn_units[0].attention is twin.up_blocks[1].attentions[0]


def test_every_level_is_a_video_block_with_diffusers_layers_and_names(pair):
    from diffusers import UNet2DConditionModel

    from training.model.units import VideoBlock

    base, unet = pair
    levels = [*unet.down_blocks, unet.mid_block, *unet.up_blocks]
    assert all(isinstance(b, VideoBlock) for b in levels)
    assert [len(b.res_units) for b in levels] == [len(b.resnets) for b in levels]
    assert [len(b.attn_units) for b in levels] == [len(b.layers("attentions")) for b in levels]
    # The 2D names are exactly SD's; the rest are the temporal layers.
    spatial = [k for k in unet.state_dict() if not is_temporal(k)]
    assert isinstance(base, UNet2DConditionModel) and sorted(spatial) == sorted(base.state_dict())
    with pytest.raises(TypeError, match="unit by unit"):
        unet.down_blocks[0](torch.randn(2, 32, 8, 8))


def test_a_level_with_layers_sd_does_not_have_is_refused():
    from torch import nn

    from training.model.units import VideoBlock

    level = nn.Module()
    level.resnets = nn.ModuleList()
    level.motion_modules = nn.ModuleList()
    with pytest.raises(ValueError, match="'motion_modules': not a Stable Diffusion 2D level"):
        VideoBlock(level, lambda channels: nn.Identity())


def moved_copy(pair) -> VidRDUNet:
    """The pair's UNet with every weight perturbed, temporal layers included (not the identity)."""
    unet = unet_from_config(dict(UNET), **FRAMEWISE).eval()
    unet.load_state_dict(pair[1].state_dict())
    with torch.no_grad():
        for p in unet.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    return unet


def test_several_contexts_per_sample_equal_the_repeated_sample_and_share_the_layers_before_the_text(pair):
    unet = moved_copy(pair)
    x, t, ctx = inputs(b=2, f=3)
    ctx3 = torch.cat([ctx, torch.zeros_like(ctx), -ctx])  # row j*B + i: sample i under text j
    batches: dict[str, list[int]] = {}
    for name, m in [("first", unet.down_blocks[0].resnets[0]), ("attn", unet.down_blocks[0].attentions[0].norm),
                    ("last", unet.up_blocks[-1].resnets[-1])]:  # fmt: skip
        m.register_forward_pre_hook(lambda m, a, name=name: batches.setdefault(name, []).append(a[0].shape[0]))
    with torch.no_grad():
        shared = unet(x, t, ctx3, contexts_per_sample=3)
        repeated = unet(torch.cat([x] * 3), torch.cat([t] * 3), ctx3)
    assert shared.shape == repeated.shape == (6, *x.shape[1:])
    torch.testing.assert_close(shared, repeated, rtol=1e-5, atol=1e-5)
    # The ResNet before the first cross-attention ran once per sample; everything from the text on, per copy.
    assert batches == {"first": [2 * 3, 6 * 3], "attn": [6 * 3, 6 * 3], "last": [6 * 3, 6 * 3]}
    assert (shared[:2] - shared[2:4]).abs().max() > 1e-3  # the copies did see different texts


def test_contexts_per_sample_and_timesteps_are_checked(pair):
    _, unet = pair
    x, t, ctx = inputs(b=2, f=3)
    with pytest.raises(ValueError, match="2 rows for 2 videos x 2 contexts"):
        unet(x, t, ctx, contexts_per_sample=2)
    with pytest.raises(ValueError, match="timestep has shape"):
        unet(x, torch.cat([t, t]), torch.cat([ctx, ctx]), contexts_per_sample=2)  # one per sample, not per copy


def test_channel_concatenation_keeps_channels_last_inputs_channels_last():
    from training.model.units import cat_channels

    x, skip = torch.randn(3, 5, 4, 6), torch.randn(3, 7, 4, 6)
    plain = cat_channels(x, skip)
    assert torch.equal(plain, torch.cat([x, skip], dim=1)) and plain.is_contiguous()
    nhwc = cat_channels(x.to(memory_format=torch.channels_last), skip.to(memory_format=torch.channels_last))
    assert torch.equal(nhwc, plain)
    assert nhwc.is_contiguous(memory_format=torch.channels_last) and not nhwc.is_contiguous()


def test_official_layout_departs_from_sd_frame_by_frame_where_the_release_does(pair):
    """Zero temporal weights: official != SD per frame (pe in the residual stream, GroupNorm over frames); without
    the embedding's effect (identical frames) only the pooled statistics remain and they change nothing."""
    base, framewise = pair
    official = unet_from_config(dict(UNET)).eval()
    official.load_state_dict(framewise.state_dict())  # same names and shapes: one state dict serves both
    assert official.config.layout == "official"
    x, t, ctx = inputs(f=4)
    with torch.no_grad():
        ref = torch.stack([base(x[:, :, i], t, ctx).sample for i in range(4)], dim=2)
        assert (official(x, t, ctx) - ref).abs().max() > 1e-2
        # Frame 3 changes frame 0 through the pooled GroupNorm statistics alone (temporal layers are zero).
        x2 = x.clone()
        x2[:, :, 3] *= 3.0
        assert (official(x2, t, ctx)[:, :, 0] - official(x, t, ctx)[:, :, 0]).abs().max() > 1e-3
        assert (framewise(x2, t, ctx)[:, :, 0] - framewise(x, t, ctx)[:, :, 0]).abs().max() < 1e-6


def test_unknown_layout_is_a_clear_error():
    with pytest.raises(ValueError, match="unknown layout 'mine'"):
        VidRDUNet(layout="mine")
