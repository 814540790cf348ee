"""The temporal VAE fine-tuning module's latent noise: on while training, off in evaluation, refused below zero."""

import pytest
import torch

from training.vae_module import TemporalVAEModule


def test_latent_noise_perturbs_training_reconstructions_only():
    torch.manual_seed(0)
    video = torch.rand(1, 3, 4, 32, 32) * 2 - 1
    plain, noisy = TemporalVAEModule("tiny", latent_noise=0.0), TemporalVAEModule("tiny", latent_noise=0.5)
    noisy.vae.load_state_dict(plain.vae.state_dict())
    for m in (plain, noisy):
        m.train()
    torch.manual_seed(1)
    _, rec_plain, _ = plain.reconstruct(video)
    torch.manual_seed(1)
    _, rec_noisy, _ = noisy.reconstruct(video)
    assert (rec_plain - rec_noisy).abs().max() > 1e-3
    noisy.eval()
    torch.manual_seed(1)
    _, rec_eval, _ = noisy.reconstruct(video)
    assert torch.allclose(rec_eval, rec_plain, atol=1e-5)  # evaluation measures the decoder on clean latents
    with pytest.raises(ValueError, match="latent_noise"):
        TemporalVAEModule("tiny", latent_noise=-0.1)
