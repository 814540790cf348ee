"""The Lightning trainer: `vidrd train fit/validate/test` on tiny models and generated shards."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from lightning.pytorch import Callback

from shards.writer import ShardWriter, finalize
from tests.conftest import make_sample
from tests.helpers import logged_metrics as metrics
from training.cli import main as train_main
from training.model.loading import EPSILON, V_PREDICTION, load_vidrd
from training.model.tiny import tiny_components
from training.unet_module import VidRDModule


@pytest.fixture(scope="module")
def shards(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("train") / "shards"
    with ShardWriter(str(d), "webvid", max_samples=4) as w:
        for i in range(10):
            w.write(make_sample(i, frames=12))
        for i in range(3):  # an empty caption and too few frames: skipped and counted
            w.write(make_sample(20 + i, frames=12, caption=" "))
            w.write(make_sample(30 + i, frames=5))
    finalize(str(d))
    return d


def fit_args(shards: Path, root: Path, *extra: str) -> list[str]:
    return [
        "--config", "tiny", "--data.train", json.dumps([{"path": str(shards)}]),
        "--trainer.default_root_dir", str(root), "--trainer.enable_progress_bar", "false",
        "--trainer.callbacks+", json.dumps({"class_path": "training.callbacks.SeenSamples",
                                            "init_args": {"dirpath": str(root / "seen")}}),
        *extra,
    ]  # fmt: skip


def seen(root: Path, rank: int = 0) -> list[dict]:
    return [json.loads(line) for line in (root / "seen" / f"rank{rank}.jsonl").read_text().splitlines()]


def test_fit_checkpoints_and_resumes_exactly(shards, tmp_path, caplog):
    full, cut = tmp_path / "full", tmp_path / "cut"
    train_main(["fit", *fit_args(shards, full, "--model.init_args.export_dir", str(full / "export"))])
    caplog.set_level(logging.INFO, logger="training.unet_module")
    caplog.clear()  # the first fit's line too, when an earlier `vidrd` command in this process showed INFO records
    train_main(["fit", *fit_args(shards, cut, "--trainer.max_steps", "3")])
    first = torch.load(cut / "checkpoints" / "last.ckpt", weights_only=False)
    assert first["global_step"] == 3
    assert "ema" in first and first["optimizer_states"][0]["state"]  # EMA and AdamW moments are saved
    assert not any(k.startswith(("vae.", "text.")) for k in first["state_dict"])  # frozen parts left out
    train_main(["fit", *fit_args(shards, cut, "--ckpt_path", "last")])
    last = torch.load(cut / "checkpoints" / "last.ckpt", weights_only=False)
    assert last["global_step"] == 6
    # Each process says once how long its first step took (the compile wait on GPU), also past the log throttle.
    said = [r.getMessage() for r in caplog.records if r.getMessage().startswith("first training step:")]
    assert [line.split("(to step ")[1].split(";")[0] for line in said] == ["1", "4"]
    first_steps = [(int(r["step"]), float(r["train/first_step_s"])) for r in metrics(cut)
                   if r.get("train/first_step_s")]  # fmt: skip
    assert [s for s, _ in first_steps] == [1, 4] and all(0 < sec < 600 for _, sec in first_steps)

    a, b = seen(full), seen(cut)
    assert [r["step"] for r in a] == list(range(6))
    assert [r["step"] for r in b] == list(range(6))  # the resumed run starts at step 3, not 0
    # Step 3 is the last batch of epoch 0 (4 batches per epoch): mid-epoch resume gives the same samples.
    assert [r["keys"] for r in b] == [r["keys"] for r in a]
    assert [r["epoch"] for r in b] == [r["epoch"] for r in a]  # resumed at an epoch's last batch: same epochs
    assert {r["epoch"] for r in a} == {0, 1} and a[0]["keys"] != a[4]["keys"]  # epochs draw differently

    rows = metrics(full)
    losses = [float(r["train/loss"]) for r in rows if r.get("train/loss")]
    assert len(losses) == 6 and all(torch.isfinite(torch.tensor(losses)))
    skipped = [float(r["data/skipped"]) for r in rows if r.get("data/skipped")]
    assert skipped and skipped[-1] >= 1 and skipped == sorted(skipped)  # a running total of bad samples
    comps = load_vidrd(str(full / "export"))
    assert comps.text_encoder is not None and comps.prediction_type == EPSILON


def test_fused_adamw_clips_under_bf16_mixed(shards, tmp_path, monkeypatch):
    """Lightning's mixed-precision plugin refuses to clip for a fused optimizer even with no gradient scaler; the
    module clips itself then, so a GPU run keeps fused AdamW (forced here on the CPU, where fused AdamW runs too)."""
    made, norms = [], []
    adamw, clip = torch.optim.AdamW, torch.nn.utils.clip_grad_norm_

    def fused_adamw(*args, **kwargs):
        made.append(adamw(*args, **{**kwargs, "fused": True, "foreach": None}))
        return made[-1]

    def clip_and_see(params, max_norm, *args, **kwargs):
        params = list(params)
        before = clip(params, max_norm, *args, **kwargs)
        norms.append((before.item(), torch.linalg.vector_norm(torch.stack([p.grad.norm() for p in params])).item()))
        return before

    monkeypatch.setattr(torch.optim, "AdamW", fused_adamw)
    monkeypatch.setattr(torch.nn.utils, "clip_grad_norm_", clip_and_see)
    root = tmp_path / "clip"
    extra = ("--trainer.max_steps", "3", "--trainer.precision", "bf16-mixed", "--trainer.gradient_clip_val", "0.001")
    train_main(["fit", *fit_args(shards, root, *extra)])
    assert made and all(o.defaults["fused"] for o in made)
    assert len(norms) == 3 and all(before > 0.001 >= after * 0.999 for before, after in norms)
    logged = [float(r["train/grad_norm"]) for r in metrics(root) if r.get("train/grad_norm")]
    assert logged == pytest.approx([before for before, _ in norms], rel=1e-3)  # the norm before clipping


def test_clipping_by_value_takes_the_modules_path_too():
    from lightning.pytorch.utilities import GradClipAlgorithmType

    m = VidRDModule()
    opt = torch.optim.AdamW(m._trainable(), fused=True)  # no trainer, so no gradient scaler: the module clips
    for i, p in enumerate(m._trainable()):
        p.grad = torch.full_like(p, 5.0 if i % 2 else -5.0)
    m.configure_gradient_clipping(opt, 0.5, GradClipAlgorithmType.VALUE)  # the enum Lightning passes
    assert all(p.grad.abs().max().item() == 0.5 for p in m._trainable())


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_a_training_step_never_waits_for_the_gpu():
    """Between the logger's every-N-steps reads, nothing in a step blocks the host on the GPU (text ids, noise,
    timesteps, loss, backward, clipping, fused AdamW, EMA), so the next step queues while the GPU works."""
    from training.timestep_sampling import shifted_timesteps

    m = VidRDModule(ema_decay=0.9, caption_dropout=0.5).cuda()
    m.ema.to("cuda")
    m.text.use_cuda_graphs()  # as the fast path trains: the frozen text encoder replayed from a graph
    opt = torch.optim.AdamW(m._trainable(), fused=True)
    batch = {"latents": torch.randn(2, 4, 4, 8, 8, device="cuda"), "caption": ["a red square", "a blue circle"]}

    def step() -> None:
        z, ctx = m._latents_and_context(batch, 0.5)
        t = shifted_timesteps(2, 1000, 3.0, "cuda")
        m.denoising_loss(z, ctx, t, torch.randn_like(z)).backward()
        torch.nn.utils.clip_grad_norm_(m._trainable(), 1.0)
        opt.step()
        m.ema.step(m._trainable())
        opt.zero_grad(set_to_none=True)

    step()  # the first moves the noise schedule's tables to the GPU and captures the text encoder, once
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        step()
        step()
    finally:
        torch.cuda.set_sync_debug_mode("default")


class BarProbe(Callback):
    """Records the progress bar's loss before every step and at the end (``dirpath/bar.json``), and which logged
    values Lightning turns into numbers each step (``prog_bar``) and on what device."""

    def __init__(self, dirpath: str):
        self.path, self.bar, self.devices = Path(dirpath) / "bar.json", [], set()

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self.bar.append(trainer.progress_bar_metrics.get("loss"))

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.devices |= {str(m.value.device) for m in trainer._results.values() if m.meta.prog_bar and m.is_tensor}

    def on_train_end(self, trainer, pl_module) -> None:
        self.bar.append(trainer.progress_bar_metrics.get("loss"))
        self.path.write_text(json.dumps({"bar": self.bar, "devices": sorted(self.devices)}))


def test_progress_bar_loss_is_a_host_copy_written_at_the_log_steps(shards, tmp_path):
    """Lightning reads every progress-bar value with ``.item()`` after each step: a GPU tensor there would make
    every step wait for the GPU. The loss reaches the bar as a host copy at the logger's steps only."""
    root = tmp_path / "bar"
    probe = json.dumps({"class_path": "tests.test_training_fit.BarProbe", "init_args": {"dirpath": str(tmp_path)}})
    train_main(["fit", *fit_args(shards, root, "--trainer.log_every_n_steps", "2", "--trainer.callbacks+", probe)])
    seen_bar = json.loads((tmp_path / "bar.json").read_text())
    bar = seen_bar["bar"]  # before steps 1..6, then after step 6
    assert bar[:2] == [None, None] and bar[2] == bar[3] and bar[4] == bar[5] and len({bar[2], bar[4], bar[6]}) == 3
    logged = {float(r["train/loss"]) for r in metrics(root) if r.get("train/loss")}
    assert {bar[2], bar[4], bar[6]} <= logged  # the losses of steps 2, 4 and 6, as the logger wrote them
    assert seen_bar["devices"] == ["cpu"]


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_the_training_loop_never_waits_for_the_gpu_between_log_steps(shards, tmp_path):
    """The whole Lightning loop, not only the step: loader, transfer, logging, progress-bar metrics, clipping, fused
    AdamW, EMA, with the fast paths on. Any host wait for the GPU in steps 3 to 5 (after the compile; no log step
    among them) raises, and the fit fails."""
    root = tmp_path / "gpu"
    callbacks = json.dumps([
        {"class_path": "tests.test_training_fit.WaitsAreErrors", "init_args": {"steps": [2, 3, 4]}},
        {"class_path": "tests.test_training_fit.BarProbe", "init_args": {"dirpath": str(tmp_path)}},
    ])  # fmt: skip
    code = train_main(["fit", "--config", "tiny", "--data.train", json.dumps([{"path": str(shards)}]),
                       "--data.samples_per_epoch", "100", "--trainer.default_root_dir", str(root),
                       "--trainer.accelerator", "gpu", "--trainer.precision", "bf16-mixed",
                       "--trainer.gradient_clip_val", "1.0", "--trainer.log_every_n_steps", "100",
                       "--trainer.enable_checkpointing", "false", "--trainer.callbacks", callbacks,
                       "--trainer.max_steps", "7"])  # fmt: skip
    assert code == 0
    assert (tmp_path / "guarded.txt").read_text() == "3"
    assert json.loads((tmp_path / "bar.json").read_text())["devices"] == ["cpu"]


class WaitsAreErrors(Callback):
    """``torch.cuda.set_sync_debug_mode("error")`` from the start of each listed step (0-based batch index) to the
    start of the next unlisted one; writes how many steps it guarded beside the run (``guarded.txt``)."""

    def __init__(self, steps: list[int]):
        self.steps, self.guarded = set(steps), 0

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self.guarded += batch_idx in self.steps
        torch.cuda.set_sync_debug_mode("error" if batch_idx in self.steps else "default")

    def on_train_end(self, trainer, pl_module) -> None:
        torch.cuda.set_sync_debug_mode("default")
        Path(trainer.default_root_dir).parent.joinpath("guarded.txt").write_text(str(self.guarded))

    def on_exception(self, trainer, pl_module, exception) -> None:
        torch.cuda.set_sync_debug_mode("default")


def test_validate_and_test_report_losses(shards, tmp_path, capsys):
    root = tmp_path / "v"
    train_main(["fit", *fit_args(shards, root, "--trainer.max_steps", "2")])
    ckpt = str(root / "checkpoints" / "last.ckpt")
    for cmd, key in (("validate", "val/loss"), ("test", "test/loss")):
        train_main([cmd, *fit_args(shards, root), "--ckpt_path", ckpt])
        assert key in capsys.readouterr().out


def test_bad_config_is_refused_with_a_message(shards, tmp_path, capsys):
    with pytest.raises(SystemExit):
        train_main(["fit", *fit_args(shards, tmp_path), "--data.no_such_key", "1"])
    assert "no_such_key" in capsys.readouterr().err
    # checked before any work starts; one line, exit 2
    assert train_main(["fit", *fit_args(shards, tmp_path), "--data.clip.frames", "0"]) == 2
    err = capsys.readouterr().err
    assert "vidrd train: error: frames must be >= 1, got 0" in err and "Traceback" not in err
    with pytest.raises(SystemExit):
        train_main(["fit", *fit_args(shards, tmp_path), "--data.batch_size", "two"])
    assert "batch_size" in capsys.readouterr().err


@pytest.mark.parametrize("prediction_type", [EPSILON, V_PREDICTION])
def test_loss_target_matches_prediction_type(prediction_type):
    m = VidRDModule(prediction_type=prediction_type)
    z, ctx = torch.randn(2, 4, 4, 8, 8), m.text(["a", "b"])
    noise, t = torch.randn_like(z), torch.tensor([10, 900])
    target = noise if prediction_type == EPSILON else m.noise_schedule.get_velocity(z, noise, t)
    other = noise if prediction_type == V_PREDICTION else m.noise_schedule.get_velocity(z, noise, t)

    class Oracle(torch.nn.Module):
        def __init__(self, out):
            super().__init__()
            self.out = out

        def forward(self, zt, t, c):
            return self.out

    m.unet = Oracle(target)  # a perfect denoiser of this kind scores 0, one of the other kind does not
    assert m.denoising_loss(z, ctx, t, noise).item() < 1e-10
    m.unet = Oracle(other)
    assert m.denoising_loss(z, ctx, t, noise).item() > 1e-3


def test_caption_dropout_uses_the_empty_prompt():
    batch = {"video": torch.zeros(3, 3, 4, 16, 16), "caption": ["a red square", "blue", "up"]}
    for drop, same_as in ((1.0, ["", "", ""]), (0.0, batch["caption"])):
        m = VidRDModule(caption_dropout=drop)
        _, ctx = m._latents_and_context(batch, drop)
        assert torch.equal(ctx, m.text(same_as))


def test_overfits_one_batch():
    torch.manual_seed(0)
    m = VidRDModule(lr=2e-3)
    z, ctx = torch.randn(2, 4, 4, 8, 8), m.text(["a red square moving right", "a blue square moving up"])
    noise, t = torch.randn_like(z), torch.tensor([200, 700])
    opt = torch.optim.AdamW(m._trainable(), lr=2e-3)
    before = m.denoising_loss(z, ctx, t, noise).item()
    for _ in range(40):
        opt.zero_grad()
        m.denoising_loss(z, ctx, t, noise).backward()
        opt.step()
    assert m.denoising_loss(z, ctx, t, noise).item() < 0.5 * before
    frozen = tiny_components(os.path.join(os.environ.get("TMPDIR", "/tmp"), "vidrd-frozen"), 0).unet.state_dict()
    for name, p in m.unet.named_parameters():  # only the paper's trainable set moved
        assert torch.equal(p, frozen[name]) != p.requires_grad, name


def test_train_all_opens_every_unet_weight_and_only_those():
    paper, everything = VidRDModule(), VidRDModule(train_all=True)
    assert 0 < len(paper._trainable()) < len(everything._trainable()) == len(list(everything.unet.parameters()))
    assert not any(p.requires_grad for p in everything.vae.parameters())
    assert not any(p.requires_grad for p in everything.text.parameters())


def test_vae_finetune_trains_only_temporal_convs(shards, tmp_path):
    root = tmp_path / "vae"
    train_main([
        "fit", "--config", "vae-tiny", "--data.train", json.dumps([{"path": str(shards)}]),
        "--trainer.default_root_dir", str(root), "--trainer.enable_progress_bar", "false",
        "--model.init_args.export_dir", str(root / "export"),
    ])  # fmt: skip
    rows = metrics(root)
    adversarial = [int(r["step"]) for r in rows if r.get("train/d_loss")]
    # From disc_start (batch 2) on; max_steps 8 counts optimizer steps, two per batch once the discriminator is on.
    assert adversarial == [2, 3, 4] and any(r.get("train/d_weight") for r in rows)
    assert all(float(r["train/kl"]) >= 0 for r in rows if r.get("train/kl"))
    assert [float(r["data/skipped"]) for r in rows if r.get("data/skipped")]  # the loader's count, as CPU tensors
    from training.model.vae import TemporalVAE

    tuned = TemporalVAE.from_pretrained(str(root / "export" / "vae")).state_dict()
    start = tiny_components(tmp_path / "w", 0).vae.state_dict()
    moved = {k for k in start if not torch.equal(start[k], tuned[k])}
    assert moved and all(".temp_convs." in k for k in moved)


@pytest.mark.slow
def test_ddp_two_processes_gloo(shards, tmp_path):
    """Two CPU ranks (gloo): same number of batches, different samples."""
    root = tmp_path / "ddp"
    vidrd = Path(sys.executable).with_name("vidrd")
    cmd = [str(vidrd), "train", "fit", *fit_args(shards, root),
           "--trainer.devices", "2", "--trainer.strategy", "ddp", "--data.samples_per_epoch", "16"]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    r0, r1 = seen(root, 0), seen(root, 1)
    assert len(r0) == len(r1) == 6
    assert [r["keys"] for r in r0] != [r["keys"] for r in r1]
    ckpt = torch.load(root / "checkpoints" / "last.ckpt", weights_only=False)
    state = next(v for k, v in ckpt.items() if k == "ShardDataModule")
    assert state["world"] == 2 and set(state["positions"]) == {0, 1}  # both ranks' positions are kept


def test_text_encoder_fine_tunes_with_its_own_rate_and_is_saved(shards, tmp_path):
    """The authors' release fine-tuned the text encoder: train it, keep it in checkpoints, export it."""
    root = tmp_path / "text"
    extra = ["--model.init_args.train_text_encoder", "true", "--model.init_args.text_lr", "0.02",
             "--model.init_args.export_dir", str(root / "export"), "--trainer.max_steps", "2"]  # fmt: skip
    train_main(["fit", *fit_args(shards, root, *extra)])
    ckpt = torch.load(root / "checkpoints" / "last.ckpt", weights_only=False)
    text_keys = [k for k in ckpt["state_dict"] if k.startswith("text.")]
    assert text_keys and not any(k.startswith("vae.") for k in ckpt["state_dict"])
    groups = ckpt["optimizer_states"][0]["param_groups"]
    assert [g["initial_lr"] if "initial_lr" in g else g["lr"] for g in groups] == [1e-3, 0.02]
    initial = tiny_components(tmp_path / "init", seed=0).text_encoder.model.state_dict()
    exported = load_vidrd(str(root / "export")).text_encoder.model.state_dict()
    changed = [k for k, v in initial.items() if not torch.equal(v, exported[k])]
    assert changed  # the exported text encoder is the trained one
    saved = {k.removeprefix("text.model."): v for k, v in ckpt["state_dict"].items() if k.startswith("text.model.")}
    assert set(saved) == set(initial)


def test_layout_choice_reaches_the_model():
    assert VidRDModule().unet.config.layout == "official"  # the default for new runs
    assert VidRDModule(layout="framewise").unet.config.layout == "framewise"


def test_fit_stops_with_a_clear_error_when_no_sample_is_usable(shards, tmp_path, capsys):
    """A clip longer than every video, or shards that are all broken: an error after a bounded number of
    skips, not a silent wait."""
    args = fit_args(shards, tmp_path / "long", "--data.clip.frames", "500", "--data.max_skips_in_a_row", "20")
    assert train_main(["fit", *args]) == 2
    err = capsys.readouterr().err
    assert "samples in a row could not be used" in err and "a clip spans 999 frames" in err
    broken = tmp_path / "broken"
    broken.mkdir()
    for i in range(3):
        (broken / f"webvid-{i:06d}.tar").write_bytes(b"not a tar file" * 100)
    args = [*fit_args(broken, tmp_path / "b", "--data.max_skips_in_a_row", "10"), "--data.samples_per_epoch", "8"]
    assert train_main(["fit", *args]) == 2
    assert "shard reads in a row gave no sample" in capsys.readouterr().err


def test_wrong_data_settings_are_one_line_errors(tmp_path, capsys):
    args = ["fit", "--config", "tiny", "--data.train", json.dumps([{"path": str(tmp_path / "nowhere")}]),
            "--trainer.default_root_dir", str(tmp_path / "r")]  # fmt: skip
    assert train_main(args) == 2
    err = capsys.readouterr().err
    assert err.startswith("vidrd train: error:") and "nowhere: no such file or folder" in err
    assert "Traceback" not in err


def test_resuming_from_an_epochs_last_batch_continues_in_the_next_epoch(shards, tmp_path):
    """4 batches an epoch: a run stopped after step 4 (its last.ckpt saved inside epoch 0's last batch) and resumed
    logs, draws and numbers every later step exactly as the uninterrupted run."""
    full, cut = tmp_path / "full", tmp_path / "cut"
    train_main(["fit", *fit_args(shards, full)])
    train_main(["fit", *fit_args(shards, cut, "--trainer.max_steps", "4")])
    train_main(["fit", *fit_args(shards, cut, "--ckpt_path", "last")])
    a, b = seen(full), seen(cut)
    assert [(r["step"], r["epoch"], r["keys"]) for r in b] == [(r["step"], r["epoch"], r["keys"]) for r in a]

    def logged(root):
        return [(r["step"], r["epoch"]) for r in metrics(root) if r.get("train/loss")]

    assert logged(cut) == logged(full) == [(str(s), str(s // 4)) for s in range(6)]


@pytest.mark.parametrize(
    "extra,message",
    [
        (["--data.batch_size", "0"], "batch_size, val_batches, shuffle_buffer and open_shards must be >= 1"),
        (["--data.clip.stride", "0"], "stride must be >= 1, got 0"),
        (["--data.max_skips_in_a_row", "0"], "max_skips_in_a_row must be >= 1"),
        (["--model.init_args.caption_dropout", "2"], "caption_dropout must be in [0, 1], got 2.0"),
        (["--model.init_args.ema_decay", "1.5"], "ema_decay must be in (0, 1), got 1.5"),
        (["--model.init_args.prediction_type", "x"], "prediction_type must be 'epsilon' or 'v_prediction'"),
        (["--model.init_args.pretrained", "/no/such/weights"], "/no/such/weights: not a file or folder"),
        (["--model.init_args.layout", "mine"], "unknown layout 'mine'"),
        (["--trainer.max_steps", "-5"], "`max_steps` must be a non-negative integer"),
        (["--trainer.accelerator", "tpu"], "torch_xla"),
    ],
)
def test_trainer_settings_errors_are_one_line(shards, tmp_path, capsys, extra, message):
    assert train_main(["fit", *fit_args(shards, tmp_path), *extra]) == 2
    err = capsys.readouterr().err
    assert "vidrd train: error:" in err and message in err and "Traceback" not in err


def test_zero_terminal_snr_leaves_no_trace_of_the_clip_and_is_exported(tmp_path):
    """With SD's schedule the noisiest input still holds 6.8% of the clip (the learning proof: motion then followed the
    seed); the zero-terminal-SNR schedule holds none, trains v-prediction, and its export samples with it."""
    from inference.sampler import make_scheduler
    from training.model.loading import save_vidrd

    z, noise, t = torch.randn(1, 4, 4, 8, 8), torch.randn(1, 4, 4, 8, 8), torch.tensor([999])
    sd = VidRDModule(prediction_type=V_PREDICTION)
    assert (sd.noise_schedule.add_noise(z, noise, t) - noise).abs().max().item() > 0.05
    m = VidRDModule(prediction_type=V_PREDICTION, zero_terminal_snr=True)
    assert float(m.noise_schedule.alphas_cumprod[-1]) == 0.0
    assert torch.allclose(m.noise_schedule.add_noise(z, noise, t), noise, atol=1e-6)
    save_vidrd(str(tmp_path / "export"), m.components())
    loaded = load_vidrd(str(tmp_path / "export"))
    assert loaded.prediction_type == V_PREDICTION and loaded.scheduler_config["rescale_betas_zero_snr"]
    sched = make_scheduler(loaded.scheduler_config, loaded.prediction_type)
    sched.set_timesteps(10)
    assert int(sched.timesteps[0]) == 999 and float(sched.alphas_cumprod[999]) == 0.0  # sampling starts at SNR 0
    # Turned off again (e.g. a run continued from this export on SD's schedule), the SD schedule comes back.
    back = VidRDModule(str(tmp_path / "export"), zero_terminal_snr=False)
    assert float(back.noise_schedule.alphas_cumprod[-1]) > 1e-3 and "timestep_spacing" not in back.scheduler_config
    with pytest.raises(ValueError, match="v_prediction"):  # an epsilon model cannot sample at SNR 0
        VidRDModule(prediction_type=EPSILON, zero_terminal_snr=True)
