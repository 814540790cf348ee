import torch

from tests.tiny_sd import VAE, tiny_vae
from training.model.loading import load_into, vae_from_config


def make():
    base = tiny_vae().eval()
    vae = vae_from_config(dict(VAE)).eval()
    load_into(vae.vae, base.state_dict(), "vae")
    return base, vae


def test_temporal_decoder_equals_autoencoderkl_per_frame_at_init():
    base, vae = make()
    z = torch.randn(2, 4, 5, 8, 8)
    with torch.no_grad():
        y = vae.decode(z)
        ref = torch.stack([base.decode(z[:, :, i] / vae.scaling_factor).sample for i in range(5)], dim=2)
    assert y.shape == (2, 3, 5, 16, 16)
    assert (y - ref).abs().max().item() < 1e-5


def test_encode_is_frame_wise_and_scaled():
    base, vae = make()
    x = torch.rand(1, 3, 3, 16, 16) * 2 - 1
    with torch.no_grad():
        z = vae.encode(x, sample=False)
        ref = base.encode(x[:, :, 1]).latent_dist.mode() * base.config.scaling_factor
    assert z.shape == (1, 4, 3, 8, 8)
    assert torch.allclose(z[:, :, 1], ref, atol=1e-5)


def test_only_temporal_convs_train_and_frames_interact_after_training():
    _, vae = make()
    vae.set_trainable()
    names = [n for n, p in vae.named_parameters() if p.requires_grad]
    assert names and all(".temp_convs." in n and n.startswith("vae.decoder.") for n in names)
    z = torch.randn(1, 4, 4, 8, 8)
    vae.decode(z).square().mean().backward()
    assert all(p.grad is None for n, p in vae.named_parameters() if not p.requires_grad)
    with torch.no_grad():
        for p in vae.temporal_parameters():
            p.add_(torch.randn_like(p) * 0.05)
        z2 = z.clone()
        z2[:, :, 3] += 1
        assert (vae.decode(z)[:, :, 0] - vae.decode(z2)[:, :, 0]).abs().max() > 1e-4


def test_diffusers_own_decoder_still_decodes_frame_by_frame_through_the_video_blocks():
    # The decoder's up blocks are VideoBlocks; AutoencoderKL.decode calls them as block(x, temb) (one frame each),
    # which must be the 2D decode even after the temporal layers have trained.
    base, vae = make()
    with torch.no_grad():
        for p in vae.temporal_parameters():
            p.add_(torch.randn_like(p) * 0.05)
        z = torch.randn(2, 4, 3, 8, 8)
        ours = vae.decode(z, temporal=False)
        theirs = vae.vae.decode(z.transpose(1, 2).reshape(6, 4, 8, 8) / vae.scaling_factor).sample
        ref = base.decode(z.transpose(1, 2).reshape(6, 4, 8, 8) / vae.scaling_factor).sample
    assert (theirs - ref).abs().max().item() < 1e-5
    assert (ours.transpose(1, 2).reshape(6, 3, 16, 16) - theirs).abs().max().item() < 1e-5
    assert (vae.decode(z) - ours).abs().max().item() > 1e-4  # temporal: the moved Temp-Convs act
