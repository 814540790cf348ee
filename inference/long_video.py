"""Iterative long-video generation: FNR, PNS and DSG (paper 4.3, equations 5-8, algorithm 1).

Notation: clip ``i`` has N frames ``z^{i,j}``, j = 0..N-1; M of them are *prompt frames*.

* Eq. 5: ``z_T^{0,j} ~ N(0, I)``.
* FNR (eq. 6) and PNS (eq. 7), for i >= 1::

      z_T^{i,j} = z_T^{i-1,N-j-1}                                           if j < M
      z_T^{i,j} = a/sqrt(1+a^2) z_T^{i-1,N-j-1} + eps,  eps ~ N(0, I/(1+a^2))  otherwise

  so every frame keeps unit variance and correlates ``a/sqrt(1+a^2)`` with its mirror; a = 0 is fresh
  noise.
* DSG (eq. 8): after the DDIM step from t, for j < M,
  ``z_{t-1}^{i,j} = z_{t-1}^{i-1,N-j-1}`` while ``t > (1-b) T + b T j / M`` (T = training timesteps,
  1000), else the normal DDIM result. Frame 0 is held longest (for b = 1, all the way to z_0), frame
  M-1 shortest.

Joining the clips. The prompt frames of clip i are guided onto the last M frames of clip i-1 *in
mirrored order*: clip i's frame j onto clip i-1's frame N-1-j. Give clip i's frame j the video
index ``v(i, j) = i (N-1) + j``; then clip i-1's frame N-1-j has ``v = i (N-1) - j``: the two are
mirror images around the seam ``v = i (N-1)``, where clip i's frame 0 *is* clip i-1's frame N-1
(held by DSG through every step when b = 1). So the video is

    clip 0 frames 0..N-1, then for each i >= 1 clip i frames 1..N-1

(each later clip adds N-1 frames; the seam frame is not repeated), and it is continuous in time:
consecutive video frames are consecutive frames of one clip. Guidance is strongest at the seam and
fades over the M prompt frames, the reflection-like boundary that lets new content enter (the paper:
"staged guidance becomes weaker as j gets closer to M"). ``F`` frames need
``ceil((F - N) / (N - 1)) + 1`` clips; the last clip is cut to length.

Memory is flat in the number of clips: only clip i-1's initial noise (N frames) and its trajectory
for the frames DSG can copy (the last M frames, at the steps where the condition can hold) are kept.

Two schedules (``LongVideoConfig.schedule``):

* ``paper`` (default): the equations above and the seamless join.
* ``official``: what the authors' released pipeline runs (``../shared/reference/official-vidrd/README.md``
  section 10), with its defaults M = 4, alpha = 4, beta = 0.4. FNR/PNS are the same equations (PNS draws
  noise for all N frames and uses the last N - M). DSG is a rule on step *indices* and step *inputs*: before
  the UNet call of step i (of T), prompt frame j takes the previous clip's step-i input of frame N-1-j while
  ``i < (M - j) (T / M) beta``. Every clip keeps all N frames (the reversed prompt frames included), so the
  video has clips x N frames; the release decodes each frame on its own (``decode_latents(temporal=False)``).

The paper's schedule is the default because it is what the paper specifies and evaluates, and its join
does not repeat the overlap frames in reverse; the official one reproduces the release's outputs.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Protocol

import torch

from inference.choices import OFFICIAL, PAPER, SCHEDULES
from inference.sampler import DDIMSampler

# Per schedule: (M, alpha, beta). The paper's figures use M = N/2 and full guidance; the release's config
# (configs/example.yaml) sets extend_overlap_frames 4, extend_noise_recycle 4, extend_denoise_guidance 0.4.
SCHEDULE_DEFAULTS = {PAPER: (8, 1.0, 1.0), OFFICIAL: (4, 4.0, 0.4)}


@dataclass(frozen=True)
class LongVideoConfig:
    """N frames per clip, M prompt frames, PNS alpha, DSG beta, and which schedule runs them."""

    clip_frames: int = 16
    prompt_frames: int = 8
    alpha: float = 1.0
    beta: float = 1.0
    schedule: str = PAPER
    fnr: bool = True  # False: every clip starts from fresh noise (the FNR ablation; PNS has nothing to mix)

    def __post_init__(self) -> None:
        if self.schedule not in SCHEDULES:
            raise ValueError(f"schedule must be one of {SCHEDULES}, got {self.schedule!r}")
        if self.clip_frames < 2:
            raise ValueError(f"clip_frames (N) must be >= 2, got {self.clip_frames}")
        if not 0 <= self.prompt_frames <= self.clip_frames:
            raise ValueError(f"prompt_frames (M) must be in [0, N={self.clip_frames}], got {self.prompt_frames}")
        if not self.alpha >= 0 or math.isinf(self.alpha):
            raise ValueError(f"alpha must be a finite number >= 0, got {self.alpha}")
        if not 0 <= self.beta <= 1:
            raise ValueError(f"beta must be in [0, 1], got {self.beta}")

    @classmethod
    def for_schedule(
        cls,
        schedule: str = PAPER,
        clip_frames: int = 16,
        prompt_frames: int | None = None,
        alpha: float | None = None,
        beta: float | None = None,
    ) -> LongVideoConfig:
        """The schedule's defaults (:data:`SCHEDULE_DEFAULTS`) with any value given replacing its own."""
        if schedule not in SCHEDULES:
            raise ValueError(f"schedule must be one of {SCHEDULES}, got {schedule!r}")
        m, a, b = SCHEDULE_DEFAULTS[schedule]
        m = min(m, clip_frames) if prompt_frames is None else prompt_frames
        return cls(clip_frames, m, a if alpha is None else alpha, b if beta is None else beta, schedule)

    @property
    def official(self) -> bool:
        return self.schedule == OFFICIAL

    def num_clips(self, frames: int) -> int:
        """Clips needed for a video of ``frames`` frames."""
        if not self.official:
            return clips_needed(frames, self.clip_frames)
        if frames < 1:
            raise ValueError(f"frames must be >= 1, got {frames}")
        return math.ceil(frames / self.clip_frames)

    def kept(self, i: int) -> slice:
        """Frames of clip i that go into the video."""
        return slice(0, None) if self.official else kept_frames(i)


def clips_needed(frames: int, n: int) -> int:
    """How many clips of N frames a video of ``frames`` frames needs under the join above."""
    if frames < 1:
        raise ValueError(f"frames must be >= 1, got {frames}")
    return 1 if frames <= n else math.ceil((frames - n) / (n - 1)) + 1


def video_index(i: int, j: int, n: int) -> int:
    """Index in the joined video of clip i's frame j (clip i >= 1 frame 0 is the seam, shared)."""
    return i * (n - 1) + j


class NoiseSource(Protocol):
    """Where the loop's random draws come from (tests inject recorded ones)."""

    def initial(self, shape: tuple[int, int, int, int]) -> torch.Tensor:
        """Clip 0's noise ``[B, C, N, h, w]`` for ``shape = (C, N, h, w)``, standard normal."""

    def fresh(self, shape: tuple[int, int, int, int], std: float) -> torch.Tensor:
        """PNS's new noise ``[B, C, F, h, w]`` for ``shape = (C, F, h, w)``, standard deviation ``std``."""


class GeneratorNoise:
    """One ``torch.Generator`` per video, so a video's noise does not depend on the rest of the batch.

    ``frame_major``: clip 0's noise is drawn frame by frame, as the release does (for one video on a CPU
    generator this reproduces the release's draws bit for bit).
    """

    def __init__(self, generators: Sequence[torch.Generator], frame_major: bool = False):
        self.generators = list(generators)
        self.frame_major = frame_major

    def _draw(self, shape: tuple[int, ...], g: torch.Generator) -> torch.Tensor:
        return torch.randn(shape, generator=g, device=g.device, dtype=torch.float32)

    def initial(self, shape: tuple[int, int, int, int]) -> torch.Tensor:
        c, n, h, w = shape
        if self.frame_major:
            return torch.stack([self._draw((n, c, h, w), g).transpose(0, 1) for g in self.generators])
        return torch.stack([self._draw((c, n, h, w), g) for g in self.generators])

    def fresh(self, shape: tuple[int, int, int, int], std: float) -> torch.Tensor:
        return torch.stack([self._draw(shape, g) * std for g in self.generators])


def fnr_pns(
    prev_zT: torch.Tensor,
    m: int,
    alpha: float,
    noise: NoiseSource | Sequence[torch.Generator],
    draw_all_frames: bool = False,
) -> torch.Tensor:
    """Eq. 6-7: initial noise of clip i from clip i-1's, ``[B, C, N, h, w]``.

    ``noise``: a :class:`NoiseSource` or one generator per video. ``draw_all_frames``: draw new noise for all N
    frames and use the last N - M (the release's order of draws); otherwise only N - M frames are drawn.
    """
    if not hasattr(noise, "fresh"):
        noise = GeneratorNoise(noise)
    rev = prev_zT.flip(2)
    _, c, n, h, w = prev_zT.shape
    if m >= n:
        return rev.clone()
    scale = 1.0 / math.sqrt(1.0 + alpha**2)
    eps = noise.fresh((c, n if draw_all_frames else n - m, h, w), scale)
    eps = eps[:, :, m:] if draw_all_frames else eps
    eps = eps.to(device=prev_zT.device, dtype=prev_zT.dtype)
    out = rev.clone()
    out[:, :, m:] = alpha * scale * rev[:, :, m:] + eps
    return out


def dsg_holds(t: int, j: int, m: int, beta: float, num_train_timesteps: int) -> bool:
    """Eq. 8's condition: whether prompt frame j copies the previous clip after the step from t."""
    big_t = num_train_timesteps
    return j < m and t > (1 - beta) * big_t + beta * big_t * j / m


class DSGGuide:
    """Step hook that records this clip's trajectory for the next clip and applies the previous one's."""

    def __init__(self, timesteps: Sequence[int], cfg: LongVideoConfig, num_train_timesteps: int):
        self.cfg = cfg
        n, m = cfg.clip_frames, cfg.prompt_frames
        # For each step k: the prompt frames j that copy, and the previous clip's frames they copy.
        self.copy_plan: list[list[int]] = [
            [j for j in range(m) if dsg_holds(t, j, m, cfg.beta, num_train_timesteps)] for t in timesteps
        ]
        # Steps at which anything may be copied next time; only those need recording.
        self.record_steps = {k for k, js in enumerate(self.copy_plan) if js}
        self.src = [n - 1 - j for j in range(m)]
        self.previous: dict[int, torch.Tensor] = {}
        self.current: dict[int, torch.Tensor] = {}

    def hook(self, k: int, _t: int, z: torch.Tensor) -> torch.Tensor:
        if self.previous and self.copy_plan[k]:
            js = self.copy_plan[k]
            prev = self.previous[k]  # [B, C, M, h, w]: previous clip's frames N-1-j for j = 0..M-1
            z = z.clone()
            z[:, :, js] = prev[:, :, js]
        if k in self.record_steps:
            self.current[k] = z[:, :, self.src].clone()
        return z

    def begin_clip(self, z_T: torch.Tensor) -> torch.Tensor:
        """The clip's initial noise as the loop uses it: the paper's DSG acts after steps only."""
        return z_T

    def next_clip(self) -> None:
        self.previous, self.current = self.current, {}


class OfficialDSGGuide:
    """The release's DSG: before the UNet call of step i, prompt frame j becomes the previous clip's step-i input
    of frame N-1-j while ``i < (M - j) (T / M) beta`` (Python floats, as the release evaluates it).

    :meth:`before_step` runs on each step's input: on z_T for step 0, then from the sampler's hook on step
    i-1's output. It records this clip's (already overwritten) inputs of frames N-1-j for the steps where a
    later clip copies.
    """

    def __init__(self, steps: int, cfg: LongVideoConfig):
        n, m = cfg.clip_frames, cfg.prompt_frames
        self.steps = steps
        self.copy_plan: list[list[int]] = [
            [j for j in range(m) if i < (m - j) * (steps / m) * cfg.beta] if m else [] for i in range(steps)
        ]
        self.src = [n - 1 - j for j in range(m)]
        self.previous: dict[int, torch.Tensor] = {}
        self.current: dict[int, torch.Tensor] = {}

    def before_step(self, i: int, z: torch.Tensor) -> torch.Tensor:
        js = self.copy_plan[i] if i < self.steps else []
        if not js:
            return z
        if self.previous:
            z = z.clone()
            z[:, :, js] = self.previous[i][:, :, js]
        self.current[i] = z[:, :, self.src].clone()
        return z

    def begin_clip(self, z_T: torch.Tensor) -> torch.Tensor:
        """Step 0's input (the release's store[0] is taken from it)."""
        return self.before_step(0, z_T)

    def hook(self, k: int, _t: int, z: torch.Tensor) -> torch.Tensor:
        return self.before_step(k + 1, z)

    def next_clip(self) -> None:
        self.previous, self.current = self.current, {}


Conditioning = Callable[[int], tuple[torch.Tensor, torch.Tensor]]


def generate_latent_clips(
    sampler: DDIMSampler,
    conditioning: Conditioning,
    num_clips: int,
    latent_shape: tuple[int, int, int, int],
    cfg: LongVideoConfig,
    generators: Sequence[torch.Generator] | NoiseSource,
    device: torch.device | str = "cpu",
    dtype: torch.dtype = torch.float32,
    on_step: Callable[[], None] | None = None,
) -> Iterator[torch.Tensor]:
    """Yield the z_0 latents ``[B, C, N, h, w]`` of clips 0..num_clips-1, one at a time.

    ``conditioning(i)`` gives (cond, uncond) text embeddings for clip i (a story changes prompts per
    clip). ``latent_shape`` is (C, N, h, w). ``generators``: one per video (video b draws all its noise from
    ``generators[b]``), or any :class:`NoiseSource`.
    """
    c, n, h, w = latent_shape
    if n != cfg.clip_frames:
        raise ValueError(f"latent_shape has {n} frames but clip_frames is {cfg.clip_frames}")
    noise = generators if hasattr(generators, "fresh") else GeneratorNoise(generators, frame_major=cfg.official)
    guide: DSGGuide | OfficialDSGGuide
    if cfg.official:
        guide = OfficialDSGGuide(len(sampler.timesteps), cfg)
    else:
        guide = DSGGuide(sampler.timesteps, cfg, sampler.num_train_timesteps)
    z_T = None
    for i in range(num_clips):
        if z_T is None or not cfg.fnr:
            z_T = noise.initial((c, n, h, w)).to(device=device, dtype=dtype)
        else:
            z_T = fnr_pns(z_T, cfg.prompt_frames, cfg.alpha, noise, draw_all_frames=cfg.official)
        z_T = guide.begin_clip(z_T)  # the next clip's FNR/PNS start from what this returns
        cond, uncond = conditioning(i)

        def hook(k: int, t: int, z: torch.Tensor) -> torch.Tensor:
            if on_step is not None:
                on_step()
            return guide.hook(k, t, z)

        z0 = sampler.sample(z_T, cond, uncond, step_hook=hook)
        guide.next_clip()
        yield z0


def kept_frames(i: int) -> slice:
    """Frames of clip i that go into the paper schedule's video (clip i >= 1 starts after the shared seam
    frame)."""
    return slice(0, None) if i == 0 else slice(1, None)
