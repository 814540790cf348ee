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

Joining the clips (``reuse="reversed"``, the paper's). The prompt frames of clip i are guided onto the last M
frames of clip i-1 *in mirrored order*: clip i's frame j onto clip i-1's frame N-1-j. Give clip i's frame j the
video index ``v(i, j) = i (N-1) + j``; then clip i-1's frame N-1-j has ``v = i (N-1) - j``: the two are
mirror images around the seam ``v = i (N-1)``, where clip i's frame 0 *is* clip i-1's frame N-1
(held by DSG through every step when b = 1). So the video is

    clip 0 frames 0..N-1, then for each i >= 1 clip i frames 1..N-1

(each later clip adds N-1 frames; the seam frame is not repeated), and it is continuous in time:
consecutive video frames are consecutive frames of one clip. Guidance is strongest at the seam and
fades over the M prompt frames, the reflection-like boundary that lets new content enter (the paper:
"staged guidance becomes weaker as j gets closer to M"). ``F`` frames need
``ceil((F - N) / (N - 1)) + 1`` clips; the last clip is cut to length.

The mirror keeps what a frame looks like across the seam, but it also mirrors what moves: clip i's frames 1..M-1
are guided onto frames *before* the seam, so an object that moved right until the seam is pulled back left for as
many frames as DSG holds them. And DSG's copies of the previous trajectory carry that clip's blurred early
predictions at the noisy steps where the new clip's layout is chosen. With a perfect model (the exact posterior of a
toy world, ``examples/ideal_long_video.py``) this loop breaks the motion at most seams, as often as independent clips
do.

``reuse="shifted"`` (``LongVideoConfig.for_schedule(reuse="shifted")`` for its defaults): the same three mechanisms
with the prompt frames in their own order. Clip i's frame j reuses clip i-1's frame ``(j + N - M) mod N``: frames
0..M-1 are clip i-1's last M frames (the same initial noise under FNR; DSG holds them), frames M..N-1 reuse the
noise of clip i-1's first N-M frames, mixed by PNS (eq. 7; alpha 0 by default: fresh noise, since that is the noise
of frames the video has left behind). DSG holds every prompt frame as long as the seam frame (``staged=False``; the
staging lets new content into prompt frames the paper's join shows, and these are never shown) to clip i-1's
finished latents noised to each step's level (``hold="finished"``), and each held step is resampled three times
(``resample=3``). The overlap frames repeat what the video already shows, so the video takes clip i's frames
M..N-1: each later clip adds N-M frames. With the perfect model it continues the motion at every seam.

Memory is flat in the number of clips: only clip i-1's initial noise (N frames) and, for the M frames DSG can copy,
its trajectory at the steps where the condition can hold (or its finished latents) are kept.

Two schedules (``LongVideoConfig.schedule``):

* ``paper`` (default): the equations above and the seamless join.
* ``official``: what the authors' released pipeline runs (``docs/official_vidrd.md``
  section 10), with its defaults M = 4, alpha = 4, beta = 0.4. FNR/PNS are the same equations (PNS draws
  noise for all N frames and uses the last N - M). DSG is a rule on step *indices* and step *inputs*: before
  the UNet call of step i (of T), prompt frame j takes the previous clip's step-i input of frame N-1-j while
  ``i < (M - j) (T / M) beta``. Every clip keeps all N frames (the reversed prompt frames included), so the
  video has clips x N frames; the release decodes each frame on its own (``decode_latents(temporal=False)``).

The paper's schedule is the default because it is what the paper specifies and evaluates, and its join
does not repeat the overlap frames in reverse; the official one reproduces the release's outputs. Its reuse stays
the paper's (reversed) by default until the shifted loop is measured on a trained model as well
(``examples/learn_long_video.py``); with a perfect model the measurement already favours it.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import torch

from inference.choices import (
    CLIP_FRAMES,
    FINISHED,
    HOLDS,
    OFFICIAL,
    PAPER,
    REUSES,
    REVERSED,
    SCHEDULES,
    SHIFTED,
    TRAJECTORY,
)
from inference.sampler import DDIMSampler

# Per (schedule, reuse): M, alpha, beta, hold, staged, resample. The paper's figures use M = N/2 and full guidance;
# the release's config (configs/example.yaml) sets extend_overlap_frames 4, extend_noise_recycle 4,
# extend_denoise_guidance 0.4. The shifted loop takes fresh noise past the prompt frames (the reused noise there is
# that of frames the video has left behind, and pulls the object back to where the previous clip began), holds every
# prompt frame to the previous clip's finished latents for all steps, and resamples each step three times.
LOOP_DEFAULTS = {
    (PAPER, REVERSED): (8, 1.0, 1.0, TRAJECTORY, True, 1),
    (PAPER, SHIFTED): (8, 0.0, 1.0, FINISHED, False, 3),
    (OFFICIAL, REVERSED): (4, 4.0, 0.4, TRAJECTORY, True, 1),
}
DEFAULT_REUSE = {PAPER: REVERSED, OFFICIAL: REVERSED}


@dataclass(frozen=True)
class LongVideoConfig:
    """N frames per clip, M prompt frames, PNS alpha, DSG beta, and which schedule runs them.

    ``reuse``: which previous frame a frame reuses (module docstring). ``hold``: what DSG holds a prompt frame to,
    ``trajectory`` (eq. 8: the previous clip's latents after the same step) or ``finished`` (the previous clip's
    finished latents, noised to the level of the step with the noise that frame started from). ``staged`` (eq. 8):
    prompt frame j is held while ``t > (1-b) T + b T d / M`` with d its distance from the seam, so frames further
    from the seam are let go earlier; False: every prompt frame is held as long as the seam frame. ``resample``: passes
    of every step that holds a frame (1: one, the paper's; more: each step is noised back and taken again, RePaint's
    resampling, so the new frames come to agree with the held ones instead of keeping what their own noise began).
    ``fnr`` False: every clip starts from fresh noise (the FNR ablation; PNS has nothing to mix). ``pns`` False: FNR
    alone (eq. 6), every frame takes its reused noise as it is (the same as alpha -> infinity).
    """

    clip_frames: int = CLIP_FRAMES
    prompt_frames: int = 8
    alpha: float = 1.0
    beta: float = 1.0
    schedule: str = PAPER
    fnr: bool = True
    pns: bool = True
    reuse: str = REVERSED
    hold: str = TRAJECTORY
    staged: bool = True
    resample: int = 1

    def __post_init__(self) -> None:
        if self.schedule not in SCHEDULES:
            raise ValueError(f"schedule must be one of {SCHEDULES}, got {self.schedule!r}")
        if self.reuse not in REUSES:
            raise ValueError(f"reuse must be one of {REUSES}, got {self.reuse!r}")
        if self.hold not in HOLDS:
            raise ValueError(f"hold must be one of {HOLDS}, got {self.hold!r}")
        if not isinstance(self.resample, int) or self.resample < 1:
            raise ValueError(f"resample must be an integer >= 1 (passes per held step), got {self.resample!r}")
        loop = (self.reuse, self.hold, self.staged, self.resample)
        if self.schedule == OFFICIAL and loop != (REVERSED, TRAJECTORY, True, 1):
            raise ValueError(
                "the official schedule is the release's loop: reuse 'reversed', hold 'trajectory', staged, resample 1; "
                f"got {self.reuse!r}, {self.hold!r}, staged={self.staged}, resample={self.resample}"
            )
        if self.clip_frames < 2:
            raise ValueError(f"clip_frames (N) must be >= 2, got {self.clip_frames}")
        if not 0 <= self.prompt_frames <= self.clip_frames:
            raise ValueError(f"prompt_frames (M) must be in [0, N={self.clip_frames}], got {self.prompt_frames}")
        if not self.alpha >= 0 or math.isinf(self.alpha):
            raise ValueError(f"alpha must be a finite number >= 0, got {self.alpha}")
        if not 0 <= self.beta <= 1:
            raise ValueError(f"beta must be in [0, 1], got {self.beta}")
        if self.reuse == SHIFTED and self.prompt_frames >= self.clip_frames:
            raise ValueError(
                f"with reuse 'shifted' prompt_frames (M) must be < N={self.clip_frames} (each clip adds N - M frames), "
                f"got {self.prompt_frames}"
            )

    @classmethod
    def for_schedule(
        cls,
        schedule: str = PAPER,
        clip_frames: int = CLIP_FRAMES,
        prompt_frames: int | None = None,
        alpha: float | None = None,
        beta: float | None = None,
        reuse: str | None = None,
        hold: str | None = None,
        staged: bool | None = None,
        resample: int | None = None,
    ) -> LongVideoConfig:
        """The loop's defaults (:data:`LOOP_DEFAULTS` for the schedule and reuse) with any value given replacing its
        own."""
        if schedule not in SCHEDULES:
            raise ValueError(f"schedule must be one of {SCHEDULES}, got {schedule!r}")
        reuse = DEFAULT_REUSE[schedule] if reuse is None else reuse
        if (schedule, reuse) not in LOOP_DEFAULTS:
            raise ValueError(f"the {schedule} schedule reuses frames {DEFAULT_REUSE[schedule]!r} only, got {reuse!r}")
        m, a, b, h, st, r = LOOP_DEFAULTS[(schedule, reuse)]
        m = min(m, clip_frames - (reuse == SHIFTED)) if prompt_frames is None else prompt_frames
        given = {"alpha": alpha, "beta": beta, "hold": hold, "staged": staged, "resample": resample}
        values = {k: d if given[k] is None else given[k] for k, d in zip(given, (a, b, h, st, r), strict=True)}
        return cls(clip_frames, m, schedule=schedule, reuse=reuse, **values)

    @property
    def official(self) -> bool:
        return self.schedule == OFFICIAL

    @property
    def new_frames(self) -> int:
        """Frames each clip after the first adds to the video."""
        if self.official:
            return self.clip_frames
        return self.clip_frames - (self.prompt_frames if self.reuse == SHIFTED else 1)

    def num_clips(self, frames: int) -> int:
        """Clips needed for a video of ``frames`` frames."""
        return clips_needed(frames, self.clip_frames, self.new_frames)

    def kept(self, i: int) -> slice:
        """Frames of clip i that go into the video."""
        return kept_frames(i, self.clip_frames - self.new_frames)

    def seam_steps(self, frames: int) -> list[int]:
        """Video indices v whose step v -> v+1 goes from one clip into the next (the seams of a video of
        ``frames`` frames)."""
        n = self.clip_frames
        seams = [n - 1 + (i - 1) * self.new_frames for i in range(1, self.num_clips(frames))]
        return [v for v in seams if v + 1 < frames]

    def source(self, j: int) -> int:
        """The previous clip's frame that frame j reuses (its noise under FNR, its trajectory under DSG)."""
        n, m = self.clip_frames, self.prompt_frames
        return n - 1 - j if self.reuse == REVERSED else (j + n - m) % n

    def seam_distance(self, j: int) -> int:
        """How far prompt frame j is from the seam (0: held longest by DSG); 0 for every frame when not staged."""
        if not self.staged:
            return 0
        return j if self.reuse == REVERSED else self.prompt_frames - 1 - j


def clips_needed(frames: int, n: int, new: int | None = None) -> int:
    """How many clips of N frames a video of ``frames`` frames needs when each clip after the first adds ``new``
    frames (None: N - 1, the paper's join above)."""
    if frames < 1:
        raise ValueError(f"frames must be >= 1, got {frames}")
    new = n - 1 if new is None else new
    return 1 if frames <= n else math.ceil((frames - n) / new) + 1


def video_index(i: int, j: int, n: int) -> int:
    """Index in the joined video of clip i's frame j (clip i >= 1 frame 0 is the seam, shared)."""
    return i * (n - 1) + j


@runtime_checkable
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
    sources: Sequence[int] | None = None,
    pns: bool = True,
) -> torch.Tensor:
    """Eq. 6-7: initial noise of clip i from clip i-1's, ``[B, C, N, h, w]``.

    ``noise``: a :class:`NoiseSource` or one generator per video. ``draw_all_frames``: draw new noise for all N
    frames and use the last N - M (the release's order of draws); otherwise only N - M frames are drawn.
    ``sources[j]``: the previous frame that frame j reuses (None: N-1-j, the paper's reversal). ``pns`` False: no
    new noise at all (eq. 6 alone).
    """
    if not isinstance(noise, NoiseSource):
        noise = GeneratorNoise(noise)
    _, c, n, h, w = prev_zT.shape
    rev = prev_zT.flip(2) if sources is None else prev_zT[:, :, list(sources)]
    if m >= n or not pns:
        return rev.clone()
    scale = 1.0 / math.sqrt(1.0 + alpha**2)
    eps = noise.fresh((c, n if draw_all_frames else n - m, h, w), scale)
    eps = eps[:, :, m:] if draw_all_frames else eps
    eps = eps.to(device=prev_zT.device, dtype=prev_zT.dtype)
    out = rev.clone()
    out[:, :, m:] = alpha * scale * rev[:, :, m:] + eps
    return out


def dsg_holds(t: int, j: int, m: int, beta: float, num_train_timesteps: int) -> bool:
    """Eq. 8's condition: whether prompt frame j copies the previous clip after the step from t (``j``: the frame's
    distance from the seam, :meth:`LongVideoConfig.seam_distance`; the frame index itself under the paper's
    reversal)."""
    big_t = num_train_timesteps
    return j < m and t > (1 - beta) * big_t + beta * big_t * j / m


class Guide(Protocol):
    """DSG for one long video, clip by clip (:class:`DSGGuide`: the paper's eq. 8; :class:`OfficialDSGGuide`: the
    release's). ``copy_plan[k]``: the prompt frames that step k holds to the previous clip (none in clip 0)."""

    copy_plan: list[list[int]]

    def begin_clip(self, z_T: torch.Tensor) -> torch.Tensor:
        """The clip's initial latents as the sampler should start from them."""

    def hook(self, k: int, t: int, z: torch.Tensor) -> torch.Tensor:
        """The latents to keep after step ``k`` (timestep ``t``)."""

    def next_clip(self, z0: torch.Tensor | None = None) -> None:
        """Close the clip whose final latents are ``z0``."""


class DSGGuide:
    """Step hook that records this clip's prompt-frame sources for the next clip and holds its prompt frames to the
    previous clip's (eq. 8, or the finished variant: :class:`LongVideoConfig` ``hold``).

    ``alphas_after[k]``: alpha_bar of the latents step k leaves (:attr:`DDIMSampler.alphas_after`); the finished
    hold needs it to noise the previous clip's finished latents to each step's level.
    """

    def __init__(
        self,
        timesteps: Sequence[int],
        cfg: LongVideoConfig,
        num_train_timesteps: int,
        alphas_after: Sequence[float] | None = None,
    ):
        self.cfg = cfg
        m = cfg.prompt_frames
        # For each step k: the prompt frames j that copy.
        self.copy_plan: list[list[int]] = [
            [j for j in range(m) if dsg_holds(t, cfg.seam_distance(j), m, cfg.beta, num_train_timesteps)]
            for t in timesteps
        ]
        self.src = [cfg.source(j) for j in range(m)]  # the previous clip's frame each prompt frame is held to
        self.finished = cfg.hold == FINISHED
        if self.finished and alphas_after is None:
            raise ValueError("hold 'finished' needs the noise level after each step (alphas_after)")
        # After the last step the sampler's output is the finished clip itself: hold the previous one's exactly.
        self.levels = [(math.sqrt(a), math.sqrt(1.0 - a)) for a in (alphas_after or [])[:-1]] + [(1.0, 0.0)]
        # Steps at which anything may be copied next time; only those need recording (trajectory hold).
        self.record_steps = set() if self.finished else {k for k, js in enumerate(self.copy_plan) if js}
        self.previous: dict = {}
        self.current: dict = {}

    def hook(self, k: int, _t: int, z: torch.Tensor) -> torch.Tensor:
        if self.previous and self.copy_plan[k]:
            js = self.copy_plan[k]
            z = z.clone()
            if self.finished:
                a, s = self.levels[k]
                z[:, :, js] = (a * self.previous["z0"][:, :, js] + s * self.previous["zT"][:, :, js]).to(z.dtype)
            else:  # [B, C, M, h, w]: the previous clip's frames src[j] after step k
                z[:, :, js] = self.previous[k][:, :, js]
        if k in self.record_steps:
            self.current[k] = z[:, :, self.src].clone()
        return z

    def begin_clip(self, z_T: torch.Tensor) -> torch.Tensor:
        """The clip's initial noise as the loop uses it: the paper's DSG acts after steps only."""
        if self.finished:
            self.current["zT"] = z_T[:, :, self.src].clone()
        return z_T

    def next_clip(self, z0: torch.Tensor | None = None) -> None:
        """The clip is done (``z0``: its finished latents, which the finished hold needs)."""
        if self.finished:
            if z0 is None:
                raise ValueError("hold 'finished' needs each clip's finished latents")
            self.current["z0"] = z0[:, :, self.src].clone()
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

    def next_clip(self, _z0: torch.Tensor | None = None) -> None:
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
    noise = generators if isinstance(generators, NoiseSource) else GeneratorNoise(generators, frame_major=cfg.official)
    guide: Guide
    if cfg.official:
        guide = OfficialDSGGuide(len(sampler.timesteps), cfg)
    else:
        guide = DSGGuide(sampler.timesteps, cfg, sampler.num_train_timesteps, sampler.alphas_after)

    def renoise(z: torch.Tensor, k: int) -> torch.Tensor:
        a, s = sampler.renoise_factors(k)
        return (a * z.float() + s * noise.fresh((c, n, h, w), 1.0).to(z.device)).to(z.dtype)

    z_T = None
    for i in range(num_clips):
        if z_T is None or not cfg.fnr:
            z_T = noise.initial((c, n, h, w)).to(device=device, dtype=dtype)
        else:
            sources = None if cfg.reuse == REVERSED else [cfg.source(j) for j in range(n)]
            z_T = fnr_pns(z_T, cfg.prompt_frames, cfg.alpha, noise, cfg.official, sources, cfg.pns)
        z_T = guide.begin_clip(z_T)  # the next clip's FNR/PNS start from what this returns
        cond, uncond = conditioning(i)

        def hook(k: int, t: int, z: torch.Tensor) -> torch.Tensor:
            if on_step is not None:
                on_step()
            return guide.hook(k, t, z)

        repeats = None
        if i > 0 and cfg.resample > 1 and not cfg.official:

            def repeats(k: int, plan: list[list[int]] = guide.copy_plan, extra: int = cfg.resample - 1) -> int:
                return extra if plan[k] else 0

        z0 = sampler.sample(z_T, cond, uncond, step_hook=hook, repeats=repeats, renoise=renoise)
        guide.next_clip(z0)
        yield z0


def kept_frames(i: int, overlap: int = 1) -> slice:
    """Frames of clip i that go into the video: all of clip 0, and for later clips those after the ``overlap``
    frames the video already shows (1: the paper's shared seam frame; M under the shifted reuse)."""
    return slice(0, None) if i == 0 else slice(overlap, None)
