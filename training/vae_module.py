"""Lightning module that fine-tunes the temporal VAE decoder (paper 4.4, A.1.2): only the new Temp-Conv
layers train, against alpha_rec * reconstruction + alpha_reg * KL + alpha_disc * adversarial loss.

The reconstruction term is L1, plus a perceptual (LPIPS) distance when ``perceptual`` names a
TorchScript LPIPS file (without one the run says "L1 only" at start). With the encoder frozen the KL
term carries no gradient to the decoder; it is computed and logged so the objective reads as the
paper's. The adversarial term follows SD's autoencoder recipe: a PatchGAN with hinge loss that
starts after ``disc_start`` steps, weighted adaptively by the ratio of gradient norms at the last
trainable layer.

Step counting: with two optimisers under manual optimisation, Lightning's ``global_step`` (what
``max_steps`` and ``every_n_train_steps`` count) advances once per optimiser step, i.e. by 2 per batch
once the discriminator is on. ``disc_start`` counts batches (the module's own ``step_count``).
"""

from __future__ import annotations

import os
from typing import Any

import lightning as L
import torch
from lightning.pytorch.utilities import rank_zero_info

from training.callbacks import close_finished_epoch
from training.losses import PatchDiscriminator, Perceptual, adaptive_weight, hinge_d_loss
from training.model.pretrained import load_components
from training.progress_bar import log_steps_due, show_on_progress_bar


class TemporalVAEModule(L.LightningModule):
    """Fine-tune :class:`training.model.TemporalVAE`'s decoder Temp-Convs on clips.

    Args:
        pretrained: as for :class:`training.unet_module.VidRDModule` (the VAE part is used).
        alpha_rec, alpha_reg, alpha_disc: the paper's loss weights (1, 1e-5, 0.5).
        disc_start: steps before the adversarial term switches on (SD's autoencoders: 50001).
        perceptual: a TorchScript LPIPS file; ``None``: L1 only.
        perceptual_weight: weight of the perceptual distance inside the reconstruction term.
        lr, disc_lr: Adam learning rates of the Temp-Convs and of the discriminator.
        grad_clip: gradient-norm clip of both optimisers (manual optimisation clips here, not in the Trainer).
        disc_channels, disc_layers: PatchGAN size.
        latent_noise: Gaussian noise added to the latents the decoder reconstructs from while training, as a share of
            their standard deviation, independently per frame (0: the paper's recipe). The decoder then learns to
            smooth per-frame latent errors, which generated latents have and an encoder's do not.
        export_dir: write the fine-tuned VAE (``vae/`` of a VidRD checkpoint folder) here at the end of ``fit``.
    """

    def __init__(
        self,
        pretrained: str = "tiny",
        alpha_rec: float = 1.0,
        alpha_reg: float = 1e-5,
        alpha_disc: float = 0.5,
        disc_start: int = 50001,
        perceptual: str | None = None,
        perceptual_weight: float = 1.0,
        lr: float = 4.5e-6,
        disc_lr: float = 4.5e-6,
        grad_clip: float | None = 1.0,
        disc_channels: int = 64,
        disc_layers: int = 3,
        export_dir: str | None = None,
        seed: int = 0,
        latent_noise: float = 0.0,
    ):
        super().__init__()
        if min(alpha_rec, alpha_reg, alpha_disc, perceptual_weight, latent_noise) < 0 or disc_start < 0:
            raise ValueError("loss weights, latent_noise and disc_start must be >= 0")
        self.save_hyperparameters()
        self.automatic_optimization = False  # two optimisers, generator then discriminator, per batch
        self.vae = load_components(pretrained, seed=seed).vae
        self.vae.set_trainable()
        self.disc = PatchDiscriminator(self.vae.config.out_channels, disc_channels, disc_layers)
        self.perceptual = Perceptual(perceptual) if perceptual else None
        rank_zero_info(f"VAE reconstruction loss: L1{' + LPIPS (' + perceptual + ')' if perceptual else ' only'}")
        self.register_buffer("step_count", torch.zeros((), dtype=torch.long))
        self._batches: int | None = None  # step_count on the host: reading the buffer every step waits for the GPU

    def _temporal(self) -> list[torch.nn.Parameter]:
        return [p for p in self.vae.parameters() if p.requires_grad]

    def last_layer(self) -> torch.nn.Parameter:
        """The weight the adaptive discriminator weight is measured at: the decoder's last Temp-Conv output layer."""
        return self.vae.vae.decoder.up_blocks[-1].temp_convs[-1].convs[-1].weight

    def reconstruct(self, video: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``[B, 3, F, H, W]`` -> (frames ``[B*F, 3, H, W]``, reconstructions, KL per frame), frames folded."""
        b, c, f, h, w = video.shape
        x = video.transpose(1, 2).reshape(b * f, c, h, w)
        with torch.no_grad():
            post = self.vae.vae.encode(x).latent_dist
            z = post.sample().contiguous()  # channel-strided latents crash CPU conv backward (see unet.py)
            kl = post.kl()
            if self.training and self.hparams.latent_noise > 0:
                z = z + self.hparams.latent_noise * z.std() * torch.randn_like(z)
        return x, self.vae.decode_frames_folded(z, f), kl

    def rec_loss(self, x: torch.Tensor, rec: torch.Tensor) -> torch.Tensor:
        loss = (x - rec).abs().mean()
        if self.perceptual is not None:
            loss = loss + self.hparams.perceptual_weight * self.perceptual(x, rec).mean()
        return loss

    def on_fit_start(self) -> None:
        if getattr(self.trainer.datamodule, "latents", False):
            raise ValueError("data.latents: the temporal VAE decoder trains on video, not on precomputed latents")

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        hp = self.hparams
        g_opt, d_opt = self.optimizers()
        x, rec, kl = self.reconstruct(batch["video"])
        rec_l = self.rec_loss(x.float(), rec.float())
        kl_l = kl.mean()
        if self._batches is None:  # once per process, after a resume has restored the buffer
            self._batches = int(self.step_count)
        adversarial = self._batches >= hp.disc_start and hp.alpha_disc > 0
        loss = hp.alpha_rec * rec_l + hp.alpha_reg * kl_l
        if adversarial:
            g_l = -self.disc(rec).float().mean()
            d_weight = adaptive_weight(hp.alpha_rec * rec_l, g_l, self.last_layer()) * hp.alpha_disc
            loss = loss + d_weight * g_l
            self.log_dict({"train/g_loss": g_l, "train/d_weight": d_weight}, on_step=True)
        g_opt.zero_grad(set_to_none=True)
        self.manual_backward(loss)
        if hp.grad_clip:
            self.clip_gradients(g_opt, gradient_clip_val=hp.grad_clip, gradient_clip_algorithm="norm")
        g_opt.step()

        if adversarial:
            d_l = hinge_d_loss(self.disc(x.detach()).float(), self.disc(rec.detach()).float())
            d_opt.zero_grad(set_to_none=True)
            self.manual_backward(d_l)
            if hp.grad_clip:
                self.clip_gradients(d_opt, gradient_clip_val=hp.grad_clip, gradient_clip_algorithm="norm")
            d_opt.step()
            self.log("train/d_loss", d_l, on_step=True)
        self.step_count += 1
        self._batches += 1
        self.log_dict({"train/loss": loss, "train/rec": rec_l, "train/kl": kl_l}, on_step=True)
        if log_steps_due(self, self._batches):  # host copies for the bar, where the logger drains the GPU anyway
            show_on_progress_bar(self, {"loss": loss, "rec": rec_l})
        dm = self.trainer.datamodule
        if dm is not None and hasattr(dm, "skipped"):  # a CPU tensor: a Python number would become a GPU copy
            self.log("data/skipped", torch.tensor(float(dm.skipped)), on_step=True)

    def _eval_step(self, batch: dict[str, Any], stage: str) -> torch.Tensor:
        x, rec, _kl = self.reconstruct(batch["video"])
        rec_l = self.rec_loss(x.float(), rec.float())
        mse = ((x.float() - rec.float()) / 2).pow(2).mean(dim=(1, 2, 3)).clamp_min(1e-10)
        psnr = (-10 * torch.log10(mse)).mean()
        n = x.shape[0]
        self.log(f"{stage}/rec", rec_l, on_epoch=True, sync_dist=True, prog_bar=True, batch_size=n)
        self.log(f"{stage}/psnr", psnr, on_epoch=True, sync_dist=True, batch_size=n)
        return rec_l

    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor:
        return self._eval_step(batch, "val")

    def test_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor:
        return self._eval_step(batch, "test")

    def configure_optimizers(self) -> list[torch.optim.Optimizer]:
        hp = self.hparams
        g = torch.optim.Adam(self._temporal(), lr=hp.lr, betas=(0.5, 0.9))
        d = torch.optim.Adam(self.disc.parameters(), lr=hp.disc_lr, betas=(0.5, 0.9))
        return [g, d]

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        close_finished_epoch(checkpoint)
        self._batches = None  # read again from the restored buffer

    def on_train_end(self) -> None:
        if self.hparams.export_dir and self.trainer.is_global_zero:
            self.vae.save_pretrained(os.path.join(os.fspath(self.hparams.export_dir), "vae"))
