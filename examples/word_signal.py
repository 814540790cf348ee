"""How much a caption's direction word can teach, per training-data design, measured with the ideal denoiser.

A model learns "moving left" only where knowing the word changes the best possible prediction of the clean clip.
In a world whose clips are all listed, that prediction is the exact posterior mean, with or without the word, so
the gain is computable at every noise level: ``G(t) = E || E[x0 | x_t, word] - E[x0 | x_t] ||^2`` per latent value,
which is also how much the training loss (v-prediction: ``G(t) / sigma_t^2``) drops for a model that uses the word.
Where ``G`` is small the input already shows the direction (the model copies it, and at sampling the direction
follows the seed) or nothing shows it yet and the word alone cannot place the object.

The world is one row of the learning proof's latents: 16 latent pixels (a 64-pixel frame through the VAE's 4x), an
object 2.7 latent pixels wide (11 px) moving left or right for 16 frames. Designs differ in where a clip's path
lies: ``centred`` (each clip one whole crossing centred on the frame, the short-clip run's data) or ``window``
(a 16-frame window from a random start along a steady crossing of the whole frame, the paper's loader), and in the
speeds. ``python -m examples.word_signal`` prints, per design, the gain summed over the training timestep
distribution for each ``timestep_shift`` asked for (3: as the short-clip run and long-video run 1 trained) and
where it lies, and plots ``G(t)`` per design.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

FRAMES, FACTOR = 16, 4  # frames per clip; pixels per latent pixel


@dataclass(frozen=True)
class Design:
    """Where training clips' paths lie: ``centred`` or ``window``; speeds, frame size and object side in pixels."""

    name: str
    layout: str
    speeds: tuple[float, ...]
    size: int = 64
    side: float = 11.0

    def clips(self, step: float = 0.05, dims: int = 1, across_step: float = 0.5) -> tuple[torch.Tensor, torch.Tensor]:
        """``([K, values] clips, [K] direction index)``: every clip of the design, unit variance over all values.

        ``dims`` 1: one row along the motion, directions forward/backward. ``dims`` 2: the whole latent frame, four
        directions, the path across the motion anywhere within a quarter frame of the centre (as
        :func:`vidrd.synthetic.travelling_shape` draws it) in steps of ``across_step`` latent pixels."""
        if self.layout not in ("centred", "window"):
            raise ValueError(f"unknown layout {self.layout!r}; one of centred, window")
        if dims not in (1, 2):
            raise ValueError(f"dims must be 1 or 2, got {dims}")
        width, side = self.size / FACTOR, self.side / FACTOR
        xs = np.arange(int(width), dtype=np.float64) + 0.5
        lo, hi = side / 2, width - side / 2  # the object's centre keeps it fully in view
        across = [None] if dims == 1 else width / 2 + np.arange(-width / 4, width / 4 + 1e-9, across_step)
        rows, dirs = [], []
        for v in (s / FACTOR for s in self.speeds):
            travel = (FRAMES - 1) * v
            if self.layout == "centred":  # a path centred on the frame, jittered by up to a latent pixel
                starts = width / 2 - travel / 2 + np.arange(-1, 1 + 1e-9, step)
            else:  # every window of a steady crossing: the first frame anywhere the clip stays in view
                starts = np.arange(lo, hi - travel + 1e-9, step)
            for d in range(2 * dims):  # forward, backward (, and the same along the other axis)
                for x0 in starts:
                    centre = x0 + v * np.arange(FRAMES) if d % 2 == 0 else width - x0 - v * np.arange(FRAMES)
                    along = box_cover(centre, side, xs)  # [F, W]
                    for y in across:
                        if y is not None:  # [F, y, x]: the across coverage times the along one
                            clip = along[:, None, :] * box_cover(np.array([y]), side, xs)[0][:, None]
                        else:
                            clip = along
                        clip = clip if d < 2 or y is None else clip.transpose(0, 2, 1)
                        rows.append(clip.reshape(-1).astype(np.float32))
                        dirs.append(d)
        x = torch.from_numpy(np.stack(rows))
        return (x - x.mean()) / x.std(), torch.tensor(dirs)


def box_cover(centre: np.ndarray, side: float, xs: np.ndarray) -> np.ndarray:
    """``[len(centre), len(xs)]``: the share of each pixel (centres ``xs``, width 1) that a box of ``side`` covers,
    for each of the box's centres (anti-aliased, as the synthetic videos are drawn)."""
    left, right = centre[:, None] - side / 2, centre[:, None] + side / 2
    return np.clip(np.minimum(right, xs + 0.5) - np.maximum(left, xs - 0.5), 0, 1)


DESIGNS = (
    Design("centred, 2-3 px/frame (the short-clip run)", "centred", (2.0, 3.0)),
    Design("window, 0.5-0.75 px/frame (long-video run 1)", "window", (0.5, 0.75)),
    Design("window, 1-1.5 px/frame", "window", (1.0, 1.5)),
    Design("window, 2-3 px/frame", "window", (2.0, 3.0)),
)


def word_gain(
    clips: torch.Tensor, dirs: torch.Tensor, alpha_bar: float, samples: int, seed: int = 0, copies: int = 1
) -> float:
    """``E || E[x0 | x_t, word] - E[x0 | x_t] ||^2`` per value at one noise level, over ``samples`` draws of x_t.

    ``copies``: the model sees that many independently noised copies of every value (the VAE's latent channels
    each carry the object: an upper bound on what they add)."""
    a, s = alpha_bar**0.5, (1 - alpha_bar) ** 0.5
    if s == 0:
        return 0.0
    g = torch.Generator().manual_seed(seed)
    pick = torch.randint(len(clips), (samples,), generator=g)
    logw = torch.zeros(samples, len(clips), dtype=clips.dtype)
    for _ in range(copies):
        z = a * clips[pick] + s * torch.randn(samples, clips.shape[1], generator=g, dtype=clips.dtype)
        logw -= torch.cdist(z, a * clips) ** 2 / (2 * s * s)  # [samples, K]
    blind = torch.softmax(logw, 1) @ clips
    same = dirs[None] == dirs[pick][:, None]
    told = torch.softmax(logw.masked_fill(~same, float("-inf")), 1) @ clips
    return float(((told - blind) ** 2).mean())


def training_density(num_train_timesteps: int, shift: float) -> np.ndarray:
    """``P(t)`` of :func:`training.timestep_sampling.shifted_timesteps` for every integer timestep."""
    edges = np.arange(num_train_timesteps + 1) / num_train_timesteps  # t = floor(T * s(u)): invert s at the edges
    u = edges / (shift - (shift - 1) * edges)
    return np.diff(u)


def measure(
    designs=DESIGNS,
    levels: int = 40,
    samples: int = 256,
    shifts: tuple[float, ...] = (3.0,),
    dims: int = 1,
    copies: int = 1,
) -> dict:
    """Per design: the word's gain ``G(t)`` at ``levels`` timesteps of the zero-terminal-SNR schedule and its sum
    over the training draw of each timestep shift (``signal``, v-prediction loss units ``G / sigma^2``; the share
    of it above t = 900 for the first shift); ``dims`` and ``copies`` as in :meth:`Design.clips` and
    :func:`word_gain`."""
    from inference.sampler import make_scheduler
    from training.model.loading import V_PREDICTION
    from training.model.sampling_defaults import sd_scheduler_config

    sched = make_scheduler(sd_scheduler_config(V_PREDICTION, True))
    ab = sched.alphas_cumprod.double().numpy()
    big_t = len(ab)
    ts = np.unique(np.linspace(0, big_t - 1, levels).round().astype(int))
    densities = {sh: training_density(big_t, sh) for sh in shifts}
    out = {"shifts": list(shifts), "dims": dims, "copies": copies, "timesteps": ts.tolist(), "designs": []}
    for d in designs:
        clips, dirs = d.clips(step=0.05 if dims == 1 else 0.25, dims=dims)
        gain = np.array([word_gain(clips, dirs, float(ab[t]), samples, int(t), copies) for t in ts])
        loss_gain = gain / np.maximum(1 - ab[ts], 1e-12)
        # The training draw's expectation, the gain interpolated between the measured timesteps.
        per_t = np.interp(np.arange(big_t), ts, loss_gain)
        mass = per_t * densities[shifts[0]]
        out["designs"].append({
            "name": d.name, "layout": d.layout, "speeds": list(d.speeds), "clips": len(clips),
            "gain": [round(float(x), 6) for x in gain],
            "signal": {str(sh): round(float((per_t * p).sum()), 6) for sh, p in densities.items()},
            "peak_timestep": int(ts[int(np.argmax(gain))]),
            "share_above_900": round(float(mass[900:].sum() / max(mass.sum(), 1e-12)), 3),
        })  # fmt: skip
    return out


def plot(result: dict, path: Path) -> None:
    """``G(t)`` per design against the timestep."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.5, 3.6))
    for row in result["designs"]:
        ax.plot(result["timesteps"], row["gain"], label=row["name"])
    ax.set_xlabel("training timestep t (zero-terminal-SNR schedule; 999 = pure noise)")
    ax.set_ylabel("what the word adds to E[x0 | x_t]")
    ax.set_title("Where a direction word can teach, per data design (ideal denoiser)", fontsize=9)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m examples.word_signal", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    ap.add_argument("--samples", type=int, default=256, help="noisy draws per timestep (default 256)")
    ap.add_argument("--levels", type=int, default=40, help="timesteps measured (default 40)")
    ap.add_argument("--shifts", default="1,3,6,12", help="timestep shifts to weigh the gain by (default 1,3,6,12)")
    ap.add_argument("--dims", type=int, choices=(1, 2), default=1,
                    help="1: one row along the motion, 2 directions; 2: the whole frame, 4 directions (slower)")
    ap.add_argument("--copies", type=int, default=1, help="noisy copies of every value (latent channels; default 1)")
    ap.add_argument("--out", type=Path, help="folder for word_signal_<dims>d_x<copies>.json and .png")
    a = ap.parse_args(argv)
    if a.samples < 1 or a.levels < 2 or a.copies < 1:
        ap.error("--samples and --copies must be >= 1 and --levels >= 2")
    try:
        shifts = tuple(float(x) for x in a.shifts.split(","))
    except ValueError:
        ap.error(f"--shifts: comma-separated numbers, got {a.shifts!r}")
    if not shifts or min(shifts) <= 0:
        ap.error(f"--shifts: every shift must be > 0, got {a.shifts!r}")
    res = measure(levels=a.levels, samples=a.samples, shifts=shifts, dims=a.dims, copies=a.copies)
    cols = [f"signal, shift {sh:g}" for sh in shifts]
    print(f"| design | clips | {' | '.join(cols)} | peak t | share above t = 900 (shift {shifts[0]:g}) |")
    print("|" + " --- |" * (len(cols) + 4))
    for r in res["designs"]:
        sig = " | ".join(f"{v:.4f}" for v in r["signal"].values())
        print(f"| {r['name']} | {r['clips']} | {sig} | {r['peak_timestep']} | {r['share_above_900']} |")
    if a.out is not None:
        a.out.mkdir(parents=True, exist_ok=True)
        stem = f"word_signal_{a.dims}d_x{a.copies}"
        (a.out / f"{stem}.json").write_text(json.dumps(res, indent=1))
        plot(res, a.out / f"{stem}.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
