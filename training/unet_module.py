"""Lightning module that trains the VidRD UNet (paper 4.1, A.2): frozen VAE, the temporal layers and
spatial transformer blocks trained with the denoising loss of the checkpoint's prediction type, caption
dropout for classifier-free guidance, AdamW with warmup, optional EMA. The text encoder is frozen (the
paper) or fine-tuned with its own learning rate (the authors' release)."""

from __future__ import annotations

import copy
import logging
import os
import time
from typing import Any

import lightning as L
import torch
import torch.nn.functional as F
from diffusers import DDPMScheduler

from training.callbacks import close_finished_epoch
from training.ema import LerpEMA
from training.latent_cache import vae_fingerprint
from training.model.fast_paths import FastPaths, apply_fast_paths
from training.model.loading import EPSILON, V_PREDICTION, SDComponents, save_vidrd
from training.model.pretrained import load_components
from training.model.sampling_defaults import (
    check_schedule,
    has_zero_terminal_snr,
    sd_scheduler_config,
    with_zero_terminal_snr,
)
from training.progress_bar import log_steps_due, show_on_progress_bar
from training.timestep_sampling import check_shift, shifted_timesteps

logger = logging.getLogger(__name__)

# Frozen parts are rebuilt from `pretrained` when a checkpoint loads, so they are not stored in it.
VAE_PREFIX, TEXT_PREFIX = "vae.", "text."


def schedule_for(config: dict[str, Any], prediction_type: str, zero_terminal_snr: bool | None) -> dict[str, Any]:
    """A checkpoint's scheduler config with the run's prediction type and, when asked, zero terminal SNR on or off."""
    cfg = {**config, "prediction_type": prediction_type}
    if zero_terminal_snr:
        cfg = with_zero_terminal_snr(cfg)
    elif zero_terminal_snr is not None and has_zero_terminal_snr(cfg):  # back to SD's own schedule
        sd = sd_scheduler_config(prediction_type)
        cfg = {k: v for k, v in cfg.items() if k not in ("rescale_betas_zero_snr", "timestep_spacing")}
        cfg["steps_offset"] = sd["steps_offset"]
    check_schedule(cfg)
    return cfg


class VidRDModule(L.LightningModule):
    """Train the VidRD UNet on clips from :class:`training.datamodule.ShardDataModule`.

    Args:
        pretrained: ``"tiny"`` (random, for tests and the demo), a Stable Diffusion 2.1 folder (diffusers
            layout) or single file, or a VidRD checkpoint folder to continue from (e.g. the converted release).
        layout: the UNet layout, ``official`` (the authors' released code; default for new runs) or
            ``framewise`` (a fresh model is SD 2.1 frame by frame); default: a VidRD folder's own, else official.
        prediction_type: ``epsilon`` or ``v_prediction``; default: what the checkpoint was trained with.
        zero_terminal_snr: train on the noise schedule rescaled to zero SNR at ``t = T`` (needs ``v_prediction``;
            ``training.model.sampling_defaults`` says why: with SD's schedule the noisiest input still shows
            where objects are and which way they move, and the model learns to follow that instead of the
            caption). Saved in the exported scheduler config, so sampling uses it too. Default: the checkpoint's.
        timestep_shift: draw training timesteps towards the noisy end (``training.timestep_sampling``): 1 is the
            paper's uniform draw; 3 puts a quarter of the steps above ``0.9 T``, where a video's layout (which way
            an object moves) can only come from the caption. Sampling is unchanged.
        train_spatial: also train SD's spatial transformer blocks (the paper does); else temporal layers only.
        train_all: train every UNet weight. Only for a UNet that starts from random weights (the learning
            proof in ``examples/``): there the frozen ResNets and projections would be random and cap what
            the model can learn. Leave off when starting from SD 2.1 (the paper's setup).
        lr, weight_decay, betas: AdamW over the trainable parameters only.
        warmup_steps: linear learning-rate warmup from 0.
        caption_dropout: share of captions replaced by the empty prompt (what CFG's unconditional branch needs).
        ema_decay: keep an exponential moving average of the trainable weights (``None``: off).
        gradient_checkpointing: recompute activations in backward (less memory, about a third more compute);
            also for the text encoder when it trains.
        train_text_encoder: fine-tune the text encoder with the UNet, as the authors' release did (its weights then
            go into checkpoints and the exported folder).
        text_lr: the text encoder's learning rate (default: ``lr``).
        export_dir: write a VidRD checkpoint folder here at the end of ``fit`` (EMA weights when EMA is on),
            ready for ``vidrd generate --checkpoint``.
        seed: seed of the tiny random weights.
        fast: on CUDA, ``FastPaths.for_training``: channels-last weights and activations, packed Temp-Attn rows,
            a channels-last GroupNorm, a regional ``torch.compile`` of the UNet's and VAE's repeated blocks and
            the frozen text encoder replayed from a CUDA graph (``training.model.fast_paths``; same arithmetic,
            compiled and captured on the first steps).
            Nothing changes on CPU. False: the plain eager path.
    """

    def __init__(
        self,
        pretrained: str = "tiny",
        layout: str | None = None,
        prediction_type: str | None = None,
        zero_terminal_snr: bool | None = None,
        timestep_shift: float = 1.0,
        train_spatial: bool = True,
        train_all: bool = False,
        lr: float = 5e-5,
        weight_decay: float = 1e-2,
        betas: tuple[float, float] = (0.9, 0.999),
        warmup_steps: int = 0,
        caption_dropout: float = 0.1,
        ema_decay: float | None = None,
        gradient_checkpointing: bool = False,
        train_text_encoder: bool = False,
        text_lr: float | None = None,
        export_dir: str | None = None,
        seed: int = 0,
        fast: bool = True,
    ):
        super().__init__()
        if not 0.0 <= caption_dropout <= 1.0:
            raise ValueError(f"caption_dropout must be in [0, 1], got {caption_dropout}")
        if ema_decay is not None and not 0.0 < ema_decay < 1.0:
            raise ValueError(f"ema_decay must be in (0, 1), got {ema_decay}")
        check_shift(timestep_shift)  # at construction, not at the first step
        if prediction_type not in (None, EPSILON, V_PREDICTION):
            raise ValueError(f"prediction_type must be {EPSILON!r} or {V_PREDICTION!r}, got {prediction_type!r}")
        self.save_hyperparameters()
        comps = load_components(pretrained, prediction_type, seed=seed, layout=layout)
        if comps.text_encoder is None:
            raise ValueError(f"{pretrained}: no text encoder/tokenizer found; training needs one")
        self.unet, self.vae, self.text = comps.unet, comps.vae, comps.text_encoder
        if train_text_encoder:
            self.text.set_trainable(True, gradient_checkpointing)
        self.vae.requires_grad_(False).eval()
        if train_all:
            self.unet.requires_grad_(True)
        else:
            self.unet.set_trainable(spatial_transformers=train_spatial)
        if gradient_checkpointing:
            self.unet.enable_gradient_checkpointing()
        self.prediction_type = comps.prediction_type
        self.scheduler_config = schedule_for(comps.scheduler_config, self.prediction_type, zero_terminal_snr)
        self.noise_schedule = DDPMScheduler.from_config(self.scheduler_config)
        self.ema = LerpEMA(self._trainable(), decay=ema_decay, foreach=True) if ema_decay else None
        self.strict_loading = False  # checkpoints leave out the frozen VAE and text encoder
        self._rate_mark: float | None = None  # when the current throughput window started
        self._rate_samples = 0
        self._train_start: float | None = None
        self._fast_applied = False
        self._ema_targets: list[torch.nn.Parameter] | None = None  # the trained weights, listed once per fit

    def setup(self, stage: str) -> None:
        # The device is known here (strategy root device) but the model is not yet moved or wrapped in DDP;
        # channels-last strides survive the move, and in-place compiled modules keep their parameter names.
        fast = FastPaths.for_training(self.trainer.strategy.root_device, self.hparams.fast)
        if fast.any and not self._fast_applied:
            apply_fast_paths(self.unet, fast)
            apply_fast_paths(self.vae, fast)
            if fast.cuda_graphs:
                self.text.use_cuda_graphs()  # while it is frozen
            self._fast_applied = True

    def on_train_start(self) -> None:
        self._train_start = time.perf_counter()
        self._ema_targets = None

    def on_validation_start(self) -> None:
        self._rate_mark = None  # validation time is not training throughput: start a new window after it

    def _log_window(self, samples: int) -> bool:
        """At each ``log_every_n_steps`` step: samples/s over the window since the last one, clocked after the GPU
        drains, the learning rate and the loader's skip count. Returns whether this step was one.

        The logger drains the GPU at those steps anyway (it reads the loss). Between them nothing in a step waits
        for the GPU, so the host queues the next step's text encoding and launches while the GPU still works; a
        per-step rate, or a Python number logged every step (Lightning makes each one a GPU tensor, a blocking
        copy), would drain it every step and show that launch time as idle GPU."""
        self._rate_samples += samples
        if not log_steps_due(self, self.global_step):
            return False
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        now = time.perf_counter()
        if self._rate_mark is not None:
            self.log("train/samples_per_s", self._rate_samples / (now - self._rate_mark), on_step=True)
        self._rate_mark, self._rate_samples = now, 0
        self.log("train/lr", self.trainer.optimizers[0].param_groups[0]["lr"], on_step=True)
        dm = self.trainer.datamodule
        if dm is not None and hasattr(dm, "skipped"):
            self.log("data/skipped", float(dm.skipped), on_step=True)
        return True

    def on_train_batch_end(self, outputs: Any, batch: Any, batch_idx: int) -> None:
        if self._log_window(len(batch["caption"])):
            show_on_progress_bar(self, {"loss": outputs.get("loss") if isinstance(outputs, dict) else None})
        # The first step of a process carries the compile (cold or from the cache) and the loader's start: say how
        # long it took, once, past the logger's every-N-steps throttle (bench_train_start reads it here).
        start = self._train_start
        if start is None:
            return
        self._train_start = None
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        seconds = time.perf_counter() - start
        if self.trainer.is_global_zero:
            line = f"first training step: {seconds:.1f} s (to step {self.global_step}; compiling, loader start in it)"
            logger.info(line)
            if self.logger is not None:
                self.logger.log_metrics({"train/first_step_s": seconds}, step=self.global_step)

    def on_fit_start(self) -> None:
        # Latents made by another VAE would train the UNet on a latent space it never decodes to.
        specs = getattr(self.trainer.datamodule, "latent_specs", None) or []
        if specs:
            mine = vae_fingerprint(self.vae)
            if any(s.vae != mine for s in specs):
                raise ValueError(
                    "data.latents: the shard sets' latents were made by another VAE than this model's; "
                    "make them again with `vidrd latents --pretrained` this run's checkpoint"
                )

    def _trainable(self) -> list[torch.nn.Parameter]:
        """Every trained weight: the UNet's, then the text encoder's when it trains."""
        return self._unet_trainable() + self._text_trainable()

    def _unet_trainable(self) -> list[torch.nn.Parameter]:
        return [p for p in self.unet.parameters() if p.requires_grad]

    def _text_trainable(self) -> list[torch.nn.Parameter]:
        return [p for p in self.text.parameters() if p.requires_grad] if self.hparams.train_text_encoder else []

    @property
    def _frozen_prefixes(self) -> tuple[str, ...]:
        return (VAE_PREFIX,) if self.hparams.train_text_encoder else (VAE_PREFIX, TEXT_PREFIX)

    def train(self, mode: bool = True) -> VidRDModule:
        super().train(mode)
        self.vae.eval()  # frozen: no dropout/norm statistics change whatever the trainer does
        return self

    # -- the objective ---------------------------------------------------------------------------------
    def _latents_and_context(self, batch: dict[str, Any], drop: float) -> tuple[torch.Tensor, torch.Tensor]:
        with torch.no_grad():
            z = batch["latents"] if "latents" in batch else self.vae.encode(batch["video"])
        captions = list(batch["caption"])
        if drop > 0:
            keep = torch.rand(len(captions)) >= drop
            captions = [c if k else "" for c, k in zip(captions, keep.tolist(), strict=True)]
        return z, self.text(captions)

    def denoising_loss(self, z: torch.Tensor, ctx: torch.Tensor, t: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        """MSE between the UNet's prediction at ``t`` and the target of the prediction type."""
        zt = self.noise_schedule.add_noise(z, noise, t)
        target = noise if self.prediction_type == EPSILON else self.noise_schedule.get_velocity(z, noise, t)
        pred = self.unet(zt, t, ctx)
        return F.mse_loss(pred.float(), target.float())

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor:
        z, ctx = self._latents_and_context(batch, self.hparams.caption_dropout)
        steps = self.noise_schedule.config.num_train_timesteps
        t = shifted_timesteps(z.shape[0], steps, self.hparams.timestep_shift, z.device)
        loss = self.denoising_loss(z, ctx, t, torch.randn_like(z))
        # For the logger only, which reads it at its writes; the bar gets a host copy then (training.progress_bar).
        self.log("train/loss", loss, on_step=True)
        return loss

    def _eval_step(self, batch: dict[str, Any], batch_idx: int, stage: str) -> torch.Tensor:
        # Fixed noise and timesteps spread over the schedule, so evaluation losses compare across runs.
        z, ctx = self._latents_and_context(batch, 0.0)
        g = torch.Generator().manual_seed(batch_idx)
        noise = torch.randn(z.shape, generator=g).to(z)
        steps = self.noise_schedule.config.num_train_timesteps
        t = ((torch.arange(z.shape[0]) + 0.5) * steps / z.shape[0]).long().to(z.device)
        loss = self.denoising_loss(z, ctx, t, noise)
        self.log(f"{stage}/loss", loss, on_epoch=True, sync_dist=True, prog_bar=True, batch_size=z.shape[0])
        return loss

    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor:
        return self._eval_step(batch, batch_idx, "val")

    def test_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor:
        return self._eval_step(batch, batch_idx, "test")

    # -- optimisation ----------------------------------------------------------------------------------
    def configure_optimizers(self) -> dict[str, Any]:
        hp = self.hparams
        # Fused AdamW on GPU (one kernel pass; the foreach one costs ~10% of a full-size step, measured), except
        # with gradient clipping under a gradient scaler (16-mixed): the fused step unscales inside itself, after
        # the clipping would have seen scaled gradients. Without a scaler, `configure_gradient_clipping` clips.
        clip = self.trainer.gradient_clip_val if self._trainer is not None else None
        fused = self.device.type == "cuda" and not (clip and self._grad_scaler() is not None)
        groups = [{"params": self._unet_trainable(), "lr": hp.lr}]
        if hp.train_text_encoder:
            groups.append({"params": self._text_trainable(), "lr": hp.text_lr if hp.text_lr is not None else hp.lr})
        opt = torch.optim.AdamW(
            groups, lr=hp.lr, weight_decay=hp.weight_decay, betas=tuple(hp.betas),
            fused=fused, foreach=None if fused else True,
        )  # fmt: skip
        warmup = max(1, hp.warmup_steps)
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda step: min(1.0, (step + 1) / warmup))
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}

    def _grad_scaler(self) -> Any:
        return getattr(self.trainer.precision_plugin, "scaler", None) if self._trainer is not None else None

    def configure_gradient_clipping(
        self, optimizer: torch.optim.Optimizer, gradient_clip_val: float | None = None,
        gradient_clip_algorithm: str | None = None,
    ) -> None:  # fmt: skip
        """Clip here when no gradient scaler is in play (bf16-mixed, 32-true): Lightning's mixed-precision plugin
        refuses any optimizer that unscales internally (fused AdamW) even when there is nothing to unscale.
        Logs the gradients' norm before clipping (``train/grad_norm``), without waiting for the GPU."""
        if not gradient_clip_val:
            return
        if self._grad_scaler() is not None:  # 16-mixed: Lightning unscales first (non-fused optimizer)
            return super().configure_gradient_clipping(optimizer, gradient_clip_val, gradient_clip_algorithm)
        params = [p for group in optimizer.param_groups for p in group["params"] if p.grad is not None]
        if gradient_clip_algorithm == "value":
            torch.nn.utils.clip_grad_value_(params, gradient_clip_val)
        else:
            norm = torch.nn.utils.clip_grad_norm_(params, gradient_clip_val)
            self.log("train/grad_norm", norm, on_step=True)

    def on_before_zero_grad(self, optimizer: torch.optim.Optimizer) -> None:
        if self.ema is not None:
            if self.ema.shadow_params[0].device != self.device:
                self.ema.to(self.device)
            if self._ema_targets is None:  # walking the module tree is host time every step; the weights stay put
                self._ema_targets = self._trainable()
            self.ema.step(self._ema_targets)

    # -- checkpoints -----------------------------------------------------------------------------------
    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["state_dict"] = {
            k: v for k, v in checkpoint["state_dict"].items() if not k.startswith(self._frozen_prefixes)
        }
        if self.ema is not None:
            checkpoint["ema"] = self.ema.state_dict()

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        close_finished_epoch(checkpoint)
        if self.ema is not None and "ema" in checkpoint:
            self.ema.load_state_dict(checkpoint["ema"])

    def components(self, use_ema: bool = True) -> SDComponents:
        """The model as inference loads it (copies of the trained parts with the EMA weights when asked)."""
        unet, text = self.unet, self.text
        if use_ema and self.ema is not None:
            self.ema.store(self._trainable())
            self.ema.copy_to(self._trainable())
            unet = type(self.unet).from_config(self.unet.config)
            unet.load_state_dict(self.unet.state_dict())
            if self.hparams.train_text_encoder:
                text = copy.deepcopy(self.text)
            self.ema.restore(self._trainable())
        return SDComponents(unet, self.vae, text, self.scheduler_config, self.prediction_type)

    def on_train_end(self) -> None:
        if self.hparams.export_dir and self.trainer.is_global_zero:
            save_vidrd(os.fspath(self.hparams.export_dir), self.components())
