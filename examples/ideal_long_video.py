"""The long-video loops with an ideal denoiser: what FNR, PNS and DSG do when the model is perfect.

The world is a line of ``WIDTH`` latent pixels on which a bump moves right at 0.4 or 0.6 px per frame, starting
anywhere it stays in view for a 16-frame clip. Every clip the world holds is listed, so the exact posterior mean of
the clean clip given a noisy one (a softmax over the list) is computable: the denoiser no trained model can beat.
Whatever a loop does to the motion at its seams here, it does with a perfect model too, so it is the loop's doing and
no training run can fix it.

    python -m examples.ideal_long_video --seeds 16

prints, per loop and setting of ``examples.learn_long_video``, how the bump moves over the 4 frames after each seam
of 4-clip videos: it continues, reflects (turns back at its usual speed) or jumps (a step over 1.5 px; the usual
step is 0.4-0.6). Seams where the bump has reached the line's end are counted apart: no clip of the world goes
further.

    python -m examples.ideal_long_video --seeds 16 --sweep paper,shifted --plot figure6_ideal.png

adds the paper's figure 6 with the perfect model: each named loop's ``all`` setting with one of M, alpha and beta
varied around its defaults (``examples.learn_long_video.SWEEP``), the share of seams where the motion continues and
where it jumps, as a table and a plot: the curves a trained model's figure 6 can be read against.

Two questions a perfect model cannot answer have their own switches. ``--learned STEPS`` replaces the ideal denoiser
by a small network trained for STEPS steps on the same clips (v-prediction, the same schedule): does a model with
errors behave as the perfect one at the seams? ``--both-ways`` adds every clip mirrored, so the bump moves left or
right and nothing but the frames a loop hands over tells a new clip which way to go: the position of a model that
never learned what the caption's direction word means. The seams are then counted along the way the first clip went.
"""

from __future__ import annotations

import argparse
import sys

import numpy as np
import torch
import torch.nn.functional as F
from diffusers.models.embeddings import get_timestep_embedding
from torch import nn

WIDTH, N = 40, 16
XS = np.arange(WIDTH, dtype=np.float64)
SPEEDS = (0.4, 0.6)
KINDS = ("continues", "reflects", "jumps", "at_end")


def world(both_ways: bool = False) -> torch.Tensor:
    """``[K, N * WIDTH]``: every clip of the world, flattened (``both_ways``: and each one mirrored, moving left)."""
    clips = np.stack([np.stack([3 * np.exp(-((XS - (x0 + v * k)) ** 2) / 2) for k in range(N)])
                      for v in SPEEDS for x0 in np.arange(3, WIDTH - 3 - (N - 1) * v, 0.1)])  # fmt: skip
    if both_ways:
        clips = np.concatenate([clips, clips[..., ::-1]])
    return torch.tensor(np.ascontiguousarray(clips), dtype=torch.float32).reshape(len(clips), -1)


def ideal_denoiser(clips: torch.Tensor, alphas: torch.Tensor):
    """A v-prediction denoiser from the exact posterior mean of x0 over ``clips`` (``alphas``: the schedule's
    cumulative alphas)."""

    def denoise(z: torch.Tensor, t: torch.Tensor, _context: torch.Tensor) -> torch.Tensor:
        out = []
        for b in range(z.shape[0]):
            a2 = float(alphas[int(t[b])])
            a, s = a2**0.5, (1 - a2) ** 0.5
            w = torch.softmax(-((z[b].reshape(-1)[None] - a * clips) ** 2).sum(1) / (2 * s * s), 0)
            x0 = (w[:, None] * clips).sum(0).reshape(z.shape[1:])
            out.append(a * (z[b] - a * x0) / s - s * x0)
        return torch.stack(out)

    return denoise


class LineDenoiser(nn.Module):
    """A small v-prediction network for the line world: residual dilated convolutions over (frame, position), whose
    receptive field spans the whole clip, each scaled and shifted by the timestep."""

    def __init__(self, channels: int = 32, dilations: tuple[int, ...] = (1, 2, 4, 8, 1)):
        super().__init__()
        self.inp = nn.Conv2d(1, channels, 3, padding=1)
        self.convs = nn.ModuleList(nn.Conv2d(channels, channels, 3, padding=d, dilation=d) for d in dilations)
        self.norms = nn.ModuleList(nn.GroupNorm(8, channels) for _ in dilations)
        self.film = nn.Sequential(nn.Linear(64, 128), nn.SiLU(), nn.Linear(128, 2 * channels * len(dilations)))
        self.out = nn.Conv2d(channels, 1, 3, padding=1)

    def forward(self, z: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """``z [B, N, WIDTH]``, ``t [B]`` -> the predicted v."""
        h = self.inp(z[:, None])
        mods = self.film(get_timestep_embedding(t, 64, downscale_freq_shift=0))[:, :, None, None]
        mods = mods.chunk(2 * len(self.convs), 1)
        for k, (conv, norm) in enumerate(zip(self.convs, self.norms, strict=True)):
            h = h + conv(F.silu(norm(h) * (1 + mods[2 * k]) + mods[2 * k + 1]))
        return self.out(F.silu(h))[:, 0]


def learned_denoiser(clips: torch.Tensor, alphas: torch.Tensor, steps: int, batch: int = 64, seed: int = 0):
    """``(denoise, losses)``: a :class:`LineDenoiser` trained ``steps`` steps on ``clips`` with the v-prediction loss
    at uniform timesteps, as a denoiser with the ideal one's signature."""
    torch.manual_seed(seed)
    net = LineDenoiser()
    opt = torch.optim.AdamW(net.parameters(), lr=2e-3)
    x = clips.reshape(len(clips), N, WIDTH)
    losses = []
    for _ in range(steps):
        x0 = x[torch.randint(len(x), (batch,))]
        t = torch.randint(0, len(alphas), (batch,))
        a2 = alphas[t][:, None, None]
        noise = torch.randn_like(x0)
        v = a2.sqrt() * noise - (1 - a2).sqrt() * x0
        loss = F.mse_loss(net(a2.sqrt() * x0 + (1 - a2).sqrt() * noise, t), v)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    net.eval()

    @torch.no_grad()
    def denoise(z: torch.Tensor, t: torch.Tensor, _context: torch.Tensor) -> torch.Tensor:
        return net(z.reshape(z.shape[0], N, WIDTH), t.reshape(-1).expand(z.shape[0])).reshape(z.shape)

    return denoise, losses


def seam_kinds(
    cfg, seeds: int = 8, clips: torch.Tensor | None = None, steps: int = 30, denoiser=None
) -> dict[str, int]:
    """How the bump moves after each seam of ``seeds`` 4-clip videos made by the loop ``cfg`` (a
    ``LongVideoConfig`` with 16-frame clips), along the way its first clip went; ``denoiser``: the ideal one over
    ``clips`` unless given."""
    from inference.long_video import generate_latent_clips
    from inference.sampler import DDIMSampler, make_scheduler
    from training.model.loading import V_PREDICTION
    from training.model.sampling_defaults import sd_scheduler_config

    clips = world() if clips is None else clips
    sched = make_scheduler(sd_scheduler_config(V_PREDICTION, True))
    denoiser = ideal_denoiser(clips, sched.alphas_cumprod) if denoiser is None else denoiser
    sampler = DDIMSampler(denoiser, sched, steps, guidance=1.0)
    context = torch.zeros(1, 1, 1)
    kinds = dict.fromkeys(KINDS, 0)
    for seed in range(seeds):
        made = generate_latent_clips(sampler, lambda i: (context, context), 4, (1, N, 1, WIDTH), cfg,
                                     [torch.Generator().manual_seed(seed)])  # fmt: skip
        video = np.concatenate([z[0, 0, cfg.kept(i), 0].numpy() for i, z in enumerate(made)])
        weight = np.clip(video, 0, None) ** 2
        track = (weight * XS).sum(-1) / weight.sum(-1)
        way = -1.0 if track[N - 1] < track[0] else 1.0  # the world's clips never stand still
        for s in cfg.seam_steps(len(track)):
            if (track[s] >= WIDTH - 6) if way > 0 else (track[s] <= 5):
                kinds["at_end"] += 1
                continue
            d = way * np.diff(track[s : s + 5])
            kinds["jumps" if np.abs(d).max() > 1.5 else "reflects" if d.sum() < 0 else "continues"] += 1
    return kinds


def sweep(loops: list[str], seeds: int = 8, clips: torch.Tensor | None = None, denoiser=None) -> list[dict]:
    """Figure 6 with the ideal denoiser: per loop, parameter (M, alpha, beta) and value of
    ``examples.learn_long_video.SWEEP``, the seam counts of :func:`seam_kinds` for the ``all`` setting."""
    from examples.learn_long_video import LOOPS, SWEEP, Run

    for loop in loops:
        if loop not in LOOPS:
            raise ValueError(f"unknown loop {loop!r}; known: {', '.join(LOOPS)}")
    clips = world() if clips is None else clips
    rows = []
    for loop in loops:
        for param, values in SWEEP.items():
            for value in values:
                kinds = seam_kinds(Run(loop, "all", param, value).config(), seeds, clips, denoiser=denoiser)
                rows.append({"loop": loop, "param": param, "value": value, **kinds})
    return rows


def shares(row: dict) -> tuple[float, float]:
    """(continues, jumps) as shares of the seams before the line's end (nan when every seam is at the end)."""
    seams = row["continues"] + row["reflects"] + row["jumps"]
    return (row["continues"] / seams, row["jumps"] / seams) if seams else (float("nan"), float("nan"))


def plot_sweep(rows: list[dict], path: str) -> None:
    """The sweep as figure 6's panels: one per parameter, continue (solid) and jump (dashed) shares per loop."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from examples.learn_long_video import SWEEP, SWEEP_NAMES, loop_defaults

    fig, axes = plt.subplots(1, len(SWEEP), figsize=(4.2 * len(SWEEP), 3.0), squeeze=False)
    for ax, param in zip(axes[0], SWEEP, strict=True):
        for n, loop in enumerate(dict.fromkeys(r["loop"] for r in rows)):
            at = sorted((r["value"], *shares(r)) for r in rows if r["loop"] == loop and r["param"] == param)
            values, cont, jump = zip(*at, strict=True)
            ax.plot(values, cont, "o-", color=f"C{n}", ms=3, label=f"{loop}: continues")
            ax.plot(values, jump, "x--", color=f"C{n}", ms=3, label=f"{loop}: jumps")
            ax.axvline(loop_defaults(loop)[param], color=f"C{n}", lw=0.5, ls=":")
        ax.set_xlabel(SWEEP_NAMES[param])
        ax.set_ylabel("share of seams", fontsize=8)
        ax.set_ylim(-0.03, 1.03)
        ax.tick_params(labelsize=7)
    axes[0][0].legend(fontsize=6)
    fig.suptitle("Figure 6 with a perfect model (dotted: each loop's default)", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    from examples.learn_long_video import LOOPS, MAIN_LOOPS, SETTINGS, SWEEP_NAMES, Run

    ap = argparse.ArgumentParser(prog="python -m examples.ideal_long_video", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    ap.add_argument("--seeds", type=int, default=16, help="4-clip videos per loop and setting (default 16)")
    ap.add_argument("--sweep", default="", help="loops whose M, alpha and beta are swept, comma-separated "
                    "(default: none)")  # fmt: skip
    ap.add_argument("--plot", help="write the sweep's plot here (PNG)")
    ap.add_argument("--both-ways", action="store_true", help="add every clip mirrored (the bump moves left or right)")
    ap.add_argument("--learned", type=int, metavar="STEPS", help="a small network trained STEPS steps on the clips "
                    "instead of the ideal denoiser")  # fmt: skip
    a = ap.parse_args(argv)
    if a.seeds < 1:
        ap.error(f"--seeds must be >= 1, got {a.seeds}")
    if a.learned is not None and a.learned < 1:
        ap.error(f"--learned must be >= 1 steps, got {a.learned}")
    sweep_loops = [x.strip() for x in a.sweep.split(",") if x.strip()]
    unknown = [x for x in sweep_loops if x not in LOOPS]
    if unknown:
        ap.error(f"unknown loop {unknown[0]!r} in --sweep; known: {', '.join(LOOPS)}")
    if a.plot and not sweep_loops:
        ap.error("--plot draws the sweep: name its loops with --sweep")
    clips = world(a.both_ways)
    denoiser = None
    if a.learned is not None:
        from inference.sampler import make_scheduler
        from training.model.loading import V_PREDICTION
        from training.model.sampling_defaults import sd_scheduler_config

        alphas = make_scheduler(sd_scheduler_config(V_PREDICTION, True)).alphas_cumprod
        denoiser, losses = learned_denoiser(clips, alphas, a.learned)
        print(f"learned denoiser: {a.learned} steps, v-prediction loss {np.mean(losses[:50]):.3f} (first 50) -> "
              f"{np.mean(losses[-100:]):.3f} (last 100)\n", flush=True)  # fmt: skip
    print(f"world: {len(clips)} clips, {'both ways' if a.both_ways else 'moving right'}; denoiser: "
          f"{'learned' if denoiser else 'ideal'}\n")  # fmt: skip
    print("| loop | setting | continues | reflects | jumps | at the line's end |")
    print("| --- | --- | --- | --- | --- | --- |")
    for loop in LOOPS:
        for setting in SETTINGS if loop in MAIN_LOOPS else ["all"]:
            k = seam_kinds(Run(loop, setting).config(), a.seeds, clips, denoiser=denoiser)
            print(f"| {loop} | {setting} | {k['continues']} | {k['reflects']} | {k['jumps']} | {k['at_end']} |",
                  flush=True)  # fmt: skip
    if sweep_loops:
        rows = sweep(sweep_loops, a.seeds, clips, denoiser)
        print("\n| loop | varied | value | continues | reflects | jumps | at the line's end | continues, share |")
        print("| --- | --- | --- | --- | --- | --- | --- | --- |")
        for r in rows:
            print(f"| {r['loop']} | {SWEEP_NAMES[r['param']]} | {r['value']:g} | {r['continues']} | {r['reflects']} "
                  f"| {r['jumps']} | {r['at_end']} | {shares(r)[0]:.2f} |")  # fmt: skip
        if a.plot:
            plot_sweep(rows, a.plot)
    return 0


if __name__ == "__main__":
    sys.exit(main())
