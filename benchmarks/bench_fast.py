"""VidRD's fast paths against its plain path and against diffusers' UNet3DConditionModel
(ModelScope config), eager and ``torch.compile``d, all in one run on one GPU. Random weights, bf16,
256x256 video (32x32 latents).

``--part sampling``: one 16-frame CFG call (batch 2) and a 50-step DDIM + CFG loop (w = 10) for
  * peer eager, peer ``torch.compile`` (whole model, default mode: the issue's reference figures);
  * VidRD plain (eager), and each fast path added in turn: channels-last, CUDA graphs, regional compile;
  * how far the fast path's output is from the plain path's (same noise), beside the distance of bf16 from
    fp32 on the plain path (what "within bf16 tolerance" means);
  * end to end through ``VidRDPipeline`` (text + sampling + temporal VAE decode), 16 frames, and 64 frames
    with FNR/PNS/DSG (seconds per clip).
``--part training``: a real step (forward, backward, fused AdamW step) of the paper's trainable set, 8
  frames, plain vs fast, batch 16 and larger; FLOPs counted by ``torch.utils.flop_counter`` over the plain
  step (the fast step does the same arithmetic); the peer (temporal layers trainable) eager beside it.
The bf16 8192^3 matmul rate, measured first, is the limit every TFLOP/s figure is divided by.

    python -m benchmarks.bench_fast --part sampling --json $OUT/fast_sampling.json
    python -m benchmarks.bench_fast --part training --json $OUT/fast_training.json
"""

from __future__ import annotations

import argparse
import contextlib
from collections.abc import Callable
from dataclasses import dataclass, replace

import torch

from benchmarks.common import Timer, best_of, cuda_mean, emit, flops_of, matmul_peak, once, peer_unet3d, write_results
from inference.sampler import DDIMSampler, GuidedStep, guidance_pass, make_scheduler
from training.model.cuda_graphs import CUDAGraphed
from training.model.fast_paths import FastPaths, apply_fast_paths
from training.model.sampling_defaults import sd_scheduler_config
from training.model.unet import VidRDUNet

STEPS, GUIDANCE = 50, 10.0


def rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = a.float(), b.float()
    return ((a - b).norm() / a.norm()).item()


LAYOUT = {"name": "official"}  # --layout: which UNet layout every VidRD row builds


def fresh_vidrd(dtype=torch.bfloat16) -> VidRDUNet:
    torch.manual_seed(0)
    with torch.device("cuda"):
        m = VidRDUNet(sample_size=32, layout=LAYOUT["name"])
    # Random, non-zero temporal output layers, so the temporal path's arithmetic counts in every comparison.
    with torch.no_grad():
        for p in m.parameters():
            if p.abs().sum() == 0:
                p.normal_(0, 0.02)
    return m.to(dtype).eval().requires_grad_(False)


def peer_unet(dtype=torch.bfloat16) -> torch.nn.Module:
    torch.manual_seed(0)
    return peer_unet3d(dtype)[0].eval().requires_grad_(False)


def sampling_inputs(dtype=torch.bfloat16):
    g = torch.Generator("cuda").manual_seed(0)
    z = torch.randn(1, 4, 16, 32, 32, device="cuda", generator=g).to(dtype)
    cond = torch.randn(1, 77, 1024, device="cuda", generator=g).to(dtype)
    return z, cond, torch.zeros_like(cond)


def cfg_call(denoiser, graphed: bool = False) -> Callable:
    """One CFG call, ``(z, t, cond, uncond) -> [uncond out; cond out]``, as the sampler makes it
    (``inference.sampler.guidance_pass``), optionally as a CUDA graph."""

    def call(z, t, cond, uncond):
        return torch.cat(guidance_pass(denoiser, z, t, cond, uncond))

    return CUDAGraphed(call) if graphed else call


def sampling_row(
    name: str,
    denoiser,
    scheduler_config: dict,
    setup_s: float = 0.0,
    dtype: torch.dtype = torch.bfloat16,
    timing: bool = True,
    step=None,
    graphed: bool = False,
) -> tuple[dict, tuple[torch.Tensor, torch.Tensor]]:
    """Time one CFG call (a CUDA graph of it when ``graphed``) and the 50-step loop (``step``: the sampler's
    step, default eager around ``denoiser``); also return the loop's z_0 and one call's output."""
    z, cond, uncond = sampling_inputs(dtype)
    sampler = DDIMSampler(denoiser, make_scheduler(scheduler_config), STEPS, GUIDANCE, step=step)
    call, t = cfg_call(denoiser, graphed), torch.tensor(500, device="cuda")
    row: dict = dict(model=name)
    with torch.no_grad():
        with Timer(cuda=True) as first:
            one = call(z, t, cond, uncond)  # first call: compiles / captures
        row["first_call_s"] = round(first.seconds + setup_s, 1)
        if timing:
            row["call_ms"] = round(cuda_mean(lambda: call(z, t, cond, uncond)) * 1e3, 2)
            row["steps50_s"] = round(best_of(lambda: sampler.sample(z, cond, uncond), runs=2, cuda=True), 3)
        out = sampler.sample(z, cond, uncond)
    emit(row)
    return row, (out, one)


@contextlib.contextmanager
def plain_cat(active: bool):
    """While active, the units concatenate skips with a plain ``torch.cat`` (the ablation of ``cat_channels``)."""
    import training.model.units as units

    kept = units.cat_channels
    if active:
        units.cat_channels = lambda x, skip: torch.cat([x, skip], dim=1)
    try:
        yield
    finally:
        units.cat_channels = kept


@dataclass(frozen=True)
class Variant:
    """A measured configuration: fast paths, plus the two levers in model code that no ``FastPaths`` switch turns
    off (for their ablations)."""

    name: str
    fast: FastPaths
    shared_sample: bool = True  # guidance gives the UNet the latents once (inference.sampler.guidance_pass)
    nhwc_cat: bool = True  # skips concatenated on the NHWC views (training.model.units.cat_channels)

    def denoiser(self, unet):
        """The UNet, or a wrapper that hides ``contexts_per_sample`` so guidance repeats the latents."""
        return unet if self.shared_sample else (lambda x, t, c: unet(x, t, c))

    def levers(self):
        """Context in which the units are traced (their first call) with this variant's concatenation."""
        return plain_cat(not self.nhwc_cat)


FP_CL_GRAPHS = FastPaths(channels_last=True, compile=False, fuse_projections=False)
FP_AUTOTUNE = FastPaths(compile_mode="max-autotune-no-cudagraphs")
# With CUDA graphs: one graph of the whole guided DDIM step.
VARIANTS = {
    "graphs": Variant("VidRD + CUDA graphs", FastPaths(channels_last=False, compile=False, fuse_projections=False)),
    "cl_graphs": Variant("VidRD + channels-last + CUDA graphs", FP_CL_GRAPHS),
    "compile_graphs": Variant(
        "VidRD + regional compile + CUDA graphs", FastPaths(channels_last=False, fuse_projections=False)
    ),
    "autotune": Variant("VidRD fast, compile mode max-autotune-no-cudagraphs", FP_AUTOTUNE),
    "unfused": Variant("VidRD fast, attention projections not fused", FastPaths(fuse_projections=False)),
    "repeated_sample": Variant(
        "VidRD fast, latents repeated for guidance (no shared prefix)", FastPaths(), shared_sample=False
    ),
    "nchw_cat": Variant("VidRD fast, skip concatenation as plain torch.cat", FastPaths(), nhwc_cat=False),
    "fast": Variant(
        "VidRD fast (default: channels-last + fused projections + regional compile + CUDA graphs)", FastPaths()
    ),
}


def profile_call(denoiser, rows: int = 30) -> None:
    """Print where the GPU time of one CFG call goes."""
    from torch.profiler import ProfilerActivity, profile

    z, cond, uncond = sampling_inputs()
    args = z, torch.tensor(500, device="cuda"), cond, uncond
    with torch.no_grad():
        denoiser(*args)  # compiled / captured before the profile
    with torch.no_grad(), profile(activities=[ProfilerActivity.CUDA]) as prof:
        denoiser(*args)
        torch.cuda.synchronize()
    print_profile(prof, rows)


def part_sampling(peak: float, variants: list[str], peer: str, e2e: bool, profile: bool) -> list[dict]:
    rows = []
    eps, vpred = sd_scheduler_config("epsilon"), sd_scheduler_config("v_prediction")
    if peer != "none":
        p = peer_unet()
        r, _ = sampling_row("peer eager", lambda x, t, c: p(x, t, encoder_hidden_states=c).sample, eps)
        rows.append(r)
    if peer == "all":
        compiled = torch.compile(p)
        r, _ = sampling_row("peer torch.compile", lambda x, t, c: compiled(x, t, encoder_hidden_states=c).sample, eps)
        rows.append(r)
    p = compiled = None
    torch._dynamo.reset()
    torch.cuda.empty_cache()

    # The bf16 yardstick: the plain path in fp32 vs in bf16, same noise.
    ref32 = fresh_vidrd(torch.float32)
    _, (out32, one32) = sampling_row("VidRD plain fp32 (reference)", ref32, vpred, dtype=torch.float32, timing=False)
    ref32 = None
    torch.cuda.empty_cache()

    plain = fresh_vidrd()
    r, (out_plain, one_plain) = sampling_row("VidRD plain (eager)", plain, vpred)
    plain = None
    r.update(err_vs_fp32_video=round(rel_err(out32, out_plain), 4),
             err_vs_fp32_call=round(rel_err(one32, one_plain), 4))  # fmt: skip
    rows.append(r)
    plain = None
    for key in variants:
        v = VARIANTS[key]
        name, fast = v.name, v.fast
        torch._dynamo.reset()
        m = fresh_vidrd()
        with Timer() as setup:
            apply_fast_paths(m, fast)
            den = v.denoiser(m)
            step = CUDAGraphed(GuidedStep(den)) if fast.cuda_graphs else None
        with v.levers():
            r, (out, one) = sampling_row(name, den, vpred, setup_s=setup.seconds, step=step, graphed=fast.cuda_graphs)
        r.update(
            err_vs_plain_video=round(rel_err(out_plain, out), 4),
            err_vs_plain_call=round(rel_err(one_plain, one), 4),
            err_vs_fp32_video=round(rel_err(out32, out), 4),
            err_vs_fp32_call=round(rel_err(one32, one), 4),
        )
        emit(r)
        rows.append(r)
        if profile:
            profile_call(cfg_call(den, fast.cuda_graphs))
        m = den = step = None
        torch.cuda.empty_cache()
    for r in rows:
        if peer != "none":
            r["x_peer_eager"] = round(rows[0]["steps50_s"] / r["steps50_s"], 2)
        if peer == "all":
            r["x_peer_compiled"] = round(rows[1]["steps50_s"] / r["steps50_s"], 2)
    if e2e:
        rows += end_to_end()  # same dynamo caches as the last variant: only the VAE compiles here
    return rows


def end_to_end() -> list[dict]:
    from benchmarks.common import PROMPT, vidrd_components
    from inference.long_video import LongVideoConfig
    from inference.pipeline import GenerationSettings, VidRDPipeline
    from inference.prompts import VideoRequest

    rows = []
    pipe = VidRDPipeline(vidrd_components(LAYOUT["name"]), "cuda", torch.bfloat16)  # fast paths on by default

    long = LongVideoConfig(16, 8, 1.0, 1.0)

    def run(frames: int) -> None:
        st = GenerationSettings(frames=frames, steps=STEPS, guidance=GUIDANCE, long=long)
        for _ in pipe.generate([VideoRequest([PROMPT])], st, progress=False):
            pass

    first = once(lambda: run(16), cuda=True)
    pipe._emb.clear()
    torch.cuda.reset_peak_memory_stats()
    s16 = best_of(lambda: run(16), runs=2, cuda=True)
    peak_gib = round(torch.cuda.max_memory_allocated() / 2**30, 2)
    rows.append(dict(model="VidRD fast, pipeline", what="16 frames: text + sampling + VAE decode",
                     seconds=round(s16, 3), first_run_s=round(first, 1), peak_GiB=peak_gib))  # fmt: skip
    s64 = best_of(lambda: run(64), runs=1, cuda=True)
    k = long.num_clips(64)
    rows.append(dict(model="VidRD fast, pipeline", what=f"64 frames FNR/PNS/DSG, {k} clips of 16 (M=8)",
                     seconds=round(s64, 3), per_clip=round(s64 / k, 3)))  # fmt: skip
    for r in rows:
        emit(r)
    return rows


def bare_step(
    model, fwd, batch: int, frames: int = 8, latent: int = 32, ctx_dim: int = 1024, device: str = "cuda"
) -> Callable[[], None]:
    """One bare training step on fixed random inputs: forward, backward, AdamW (fused on CUDA) over the trainable
    parameters; bf16 inputs on CUDA (the model's weights are bf16 there), fp32 elsewhere."""
    cuda = device == "cuda"
    dtype = torch.bfloat16 if cuda else torch.float32
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-5, fused=cuda)
    g = torch.Generator(device).manual_seed(0)
    x = torch.randn(batch, 4, frames, latent, latent, device=device, generator=g).to(dtype)
    t = torch.randint(0, 1000, (batch,), device=device, generator=g)
    c = torch.randn(batch, 77, ctx_dim, device=device, generator=g).to(dtype)

    def step():
        opt.zero_grad(set_to_none=True)
        fwd(x, t, c).float().square().mean().backward()
        opt.step()

    return step


def train_row(name: str, model, fwd, batch: int, flops: int | None, peak: float, profile: bool = False) -> dict:
    params = [p for p in model.parameters() if p.requires_grad]
    step = bare_step(model, fwd, batch)
    row = dict(model=name, batch=batch, frames=8, trainable_M=round(sum(p.numel() for p in params) / 1e6, 1))
    try:
        if flops is None:
            flops = flops_of(step)
        row["first_step_s"] = round(once(step, cuda=True), 1)
        torch.cuda.reset_peak_memory_stats()
        sec = cuda_mean(step, warmup=2, iters=5, repeats=2)
        row.update(ms=round(sec * 1e3, 1), samples_per_s=round(batch / sec, 1), tflop=round(flops / 1e12, 2),
                   tflops=round(flops / sec / 1e12, 1), of_matmul_peak=round(flops / sec / 1e12 / peak, 3),
                   peak_GiB=round(torch.cuda.max_memory_allocated() / 2**30, 1))  # fmt: skip
        if profile:
            from torch.profiler import ProfilerActivity
            from torch.profiler import profile as torch_profile

            with torch_profile(activities=[ProfilerActivity.CUDA]) as prof:
                step()
                torch.cuda.synchronize()
            print_profile(prof)
    except torch.cuda.OutOfMemoryError:
        row["error"] = "OOM"
    row["_flops"] = flops
    emit({k: v for k, v in row.items() if k != "_flops"})
    return row


TRAINING = FastPaths.for_training("cuda")
TRAIN_VARIANTS = {
    "fast": Variant("VidRD fast (training set)", TRAINING),
    "no_pack": Variant("VidRD fast, Temp-Attn not packed", replace(TRAINING, pack_temporal_attention=0)),
    "no_gn": Variant("VidRD fast, GroupNorm's own lowering", replace(TRAINING, channel_stats_group_norm=False)),
    "sampling_set": Variant(
        "VidRD fast, sampling set (channels-last + compile)", FastPaths(cuda_graphs=False, fuse_projections=False)
    ),
    "nchw_cat": Variant("VidRD fast, skip concatenation as plain torch.cat", TRAINING, nhwc_cat=False),
}


def part_training(peak: float, batches: list[int], variants: list[str], profile: bool, peer: bool) -> list[dict]:
    """Plain at the first batch size (its FLOP count is the reference: the fast paths do the same arithmetic,
    and packed Temp-Attn rows would count masked-out scores), the first variant at every batch size, the
    others (ablations) at the first.

    FLOPs are linear in the batch (every op is per sample: the earlier ``bench_unet.py`` counted exactly twice the
    FLOPs at batch 16 as at 8), so larger batches, where the eager model would not fit, reuse the count scaled.
    """
    rows = []
    m = fresh_vidrd().train()
    m.set_trainable(spatial_transformers=True)
    plain = train_row("VidRD plain (eager)", m, m, batches[0], None, peak)
    rows.append(plain)
    m = None
    torch.cuda.empty_cache()
    runs = [(key, b) for key in variants for b in (batches if key == variants[0] else batches[:1])]
    for key, batch in runs:
        v = TRAIN_VARIANTS[key]
        torch._dynamo.reset()
        m = fresh_vidrd().train()
        m.set_trainable(spatial_transformers=True)
        apply_fast_paths(m, v.fast)
        flops = plain["_flops"] * batch // batches[0]
        with v.levers():
            rows.append(train_row(v.name, m, m, batch, flops, peak, profile))
        profile = False
        m = None
        torch.cuda.empty_cache()
    if peer:
        p = peer_unet().train()
        for n, param in p.named_parameters():
            param.requires_grad_("temp_" in n or "transformer_in" in n)
        fwd = lambda x, t, c: p(x, t, encoder_hidden_states=c).sample  # noqa: E731
        rows.append(train_row("peer eager (temporal trainable)", p, fwd, batches[0], None, peak))
    for r in rows:
        r.pop("_flops", None)
    return rows


KERNEL_KINDS = (
    ("attention", ("sdpa", "flash", "fmha", "attention")),
    ("conv", ("xmma", "implicit_gemm", "conv", "dgrad", "wgrad", "nchw", "nhwc")),
    ("gemm", ("nvjet", "gemm", "cutlass", "sm90")),
    ("triton (fused elementwise/norms)", ("triton",)),
)


def print_profile(prof, rows: int = 30) -> None:
    """Top kernels, then GPU time by kind of kernel."""
    print(prof.key_averages().table(sort_by="self_cuda_time_total", row_limit=rows, max_name_column_width=90))
    kinds: dict[str, float] = {}
    for e in prof.key_averages():
        name = e.key.lower()
        kind = next((k for k, keys in KERNEL_KINDS if any(w in name for w in keys)), "other")
        kinds[kind] = kinds.get(kind, 0.0) + e.self_device_time_total / 1e3
    emit({"gpu_ms_by_kind": {k: round(v, 2) for k, v in sorted(kinds.items(), key=lambda kv: -kv[1])}})


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--part", choices=["sampling", "training"], required=True)
    ap.add_argument("--json", help="write the rows here")
    ap.add_argument(
        "--variants", default="fast", help=f"sampling: fast-path variants besides plain, from {list(VARIANTS)}"
    )
    ap.add_argument(
        "--peer",
        choices=["all", "eager", "none"],
        default="all",
        help="sampling: the peer eager and compiled, eager only (its compile takes minutes), or none; "
        "training: none leaves the peer out",
    )
    ap.add_argument("--no-e2e", action="store_true", help="sampling: leave out the end-to-end pipeline runs")
    ap.add_argument("--layout", choices=["official", "framewise"], default="official", help="the VidRD UNet layout")
    ap.add_argument(
        "--profile",
        action="store_true",
        help="print where the GPU time goes (each sampling variant; the first fast training step)",
    )
    ap.add_argument("--batches", default="16,24", help="training: batch sizes (8 frames each)")
    ap.add_argument(
        "--train-variants",
        default="fast",
        help=f"training: fast-path sets, the first at every batch, from {list(TRAIN_VARIANTS)}",
    )
    args = ap.parse_args()
    for given, known in ((args.variants, VARIANTS), (args.train_variants, TRAIN_VARIANTS)):
        unknown = [k for k in given.split(",") if k not in known]
        if unknown:
            ap.error(f"unknown variant(s) {unknown}; choose from {list(known)}")
    LAYOUT["name"] = args.layout
    torch.backends.cuda.matmul.allow_tf32 = True
    torch.backends.cudnn.benchmark = True  # both paths, peer included: fixed shapes
    peak = matmul_peak()
    emit({"matmul_tflops": round(peak, 1)})
    if args.part == "sampling":
        rows = part_sampling(peak, args.variants.split(","), args.peer, not args.no_e2e, args.profile)
    else:
        batches = [int(b) for b in args.batches.split(",")]
        rows = part_training(peak, batches, args.train_variants.split(","), args.profile, args.peer != "none")
    for r in rows:
        print(" | ".join(f"{k}={v}" for k, v in r.items()))
    write_results(args.json, rows, matmul_tflops=round(peak, 1), layout=args.layout, steps=STEPS, guidance=GUIDANCE,
                  dtype="bf16", size="256x256")  # fmt: skip


if __name__ == "__main__":
    main()
