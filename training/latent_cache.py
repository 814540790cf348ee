"""Precomputed VAE latents beside the videos of a shard set, so training neither decodes video nor runs the VAE.

``vidrd latents --pretrained CKPT --shards IN --out OUT --size 256`` copies every sample of ``IN`` into ``OUT``
with one more member, ``<key>.latents.npy``: the VAE posterior of every frame, resized so its short side is
``size`` (the long side to a multiple of the VAE's downsampling), as float16 ``[2, C, F, h, w]`` = (mean, std),
both already multiplied by the VAE's scaling factor. The trainer (``data.latents: true``) then draws a clip's
frames from the latents, crops at random in latent space (one latent pixel = ``factor`` pixels) and samples
``mean + std * noise``: the same distribution as encoding the clip each step, with the crop on a coarser grid.

The mp4, caption and metadata are copied unchanged, so the output is an ordinary shard set (inspection, ``where``
filters, the temporal VAE fine-tune all work on it). A sample whose video does not decode is a reject with its
reason; the counts add up: samples in = samples out + rejects. ``OUT/_latents.json`` names the VAE (a hash of
its encoder weights), and a training run whose VAE differs refuses the set at start. Work is split by input
shard (``--part I/N`` runs every N-th shard from the I-th, one process per GPU); finished parts are skipped
when a run is repeated.
"""

from __future__ import annotations

import hashlib
import io
import json
import posixpath
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from fsspec.core import url_to_fs
from tqdm import tqdm

from manifests.schema import RejectReason
from media.video import decode_frames
from shards.reader import list_shards, scan_shard
from shards.writer import Sample, ShardWriter, complete_parts, finalize

LATENTS_MEMBER = "latents.npy"
LATENTS_INFO = "_latents.json"
STAGE = "latents"


@dataclass(frozen=True)
class LatentSpec:
    """What a set's latents were made with; a sample's ``.json`` carries it under ``latents``."""

    size: int  # short side in pixels
    factor: int  # pixels per latent pixel
    scaling_factor: float
    vae: str  # sha256 of the VAE encoder's weights

    @classmethod
    def of(cls, meta: Any) -> LatentSpec:
        """The spec recorded as ``meta``; ValueError when it is not one (a damaged or foreign record)."""
        types = {"size": int, "factor": int, "scaling_factor": (int, float), "vae": str}
        if not isinstance(meta, dict) or set(meta) != set(types):
            raise ValueError(f"not a latent spec {{{', '.join(types)}}}: {str(meta)[:200]}")
        bad = [k for k, t in types.items() if not isinstance(meta[k], t) or isinstance(meta[k], bool)]
        if bad:
            raise ValueError(f"latent spec field {bad[0]} is {meta[bad[0]]!r}")
        return cls(**meta)


def read_spec(fs: Any, info_path: str) -> LatentSpec:
    """The spec in a set's ``_latents.json``; ValueError naming the file when it is not this command's record."""
    try:
        return LatentSpec.of(json.loads(fs.cat(info_path))["spec"])
    except (OSError, ValueError, KeyError, TypeError, RecursionError) as e:
        raise ValueError(f"{info_path} is not a `vidrd latents` record ({type(e).__name__}: {e}); "
                         "use another --out, or make the set again") from e  # fmt: skip


def vae_fingerprint(vae: torch.nn.Module) -> str:
    """SHA-256 over the weights that make latents (the encoder and its quant conv), in name order."""
    h = hashlib.sha256()
    for name, t in sorted(vae.state_dict().items()):
        if ".encoder." in f".{name}" or ("quant_conv" in name and "post_quant" not in name):
            h.update(name.encode())
            h.update(t.detach().to("cpu", torch.float32).contiguous().numpy().tobytes())
    return h.hexdigest()


def resize_for_latents(frames: np.ndarray, size: int, factor: int) -> torch.Tensor:
    """``[F, H, W, 3]`` uint8 -> ``[F, 3, h, w]`` float in [-1, 1]: short side ``size``, long side rounded to a
    multiple of ``factor`` (the training loader's resize, without its crop)."""
    x = torch.from_numpy(frames).permute(0, 3, 1, 2).float()
    h, w = x.shape[-2:]
    scale = size / min(h, w)
    nh = max(size, round(h * scale / factor) * factor)
    nw = max(size, round(w * scale / factor) * factor)
    x = F.interpolate(x, size=(nh, nw), mode="bilinear", antialias=True, align_corners=False)
    return (x / 127.5 - 1.0).clamp(-1, 1)


@torch.no_grad()
def encode_posterior(vae, frames: torch.Tensor, chunk: int, device: str, dtype: torch.dtype) -> np.ndarray:
    """float16 ``[2, C, F, h, w]``: scaled posterior mean and std of ``frames [F, 3, H, W]``, ``chunk`` at a time."""
    means, stds = [], []
    for i in range(0, len(frames), chunk):
        x = frames[i : i + chunk].to(device, dtype)
        dist = vae.vae.encode(x).latent_dist
        means.append(dist.mean.float().cpu())
        stds.append(dist.std.float().cpu())
    sf = vae.scaling_factor
    both = torch.stack([torch.cat(means) * sf, torch.cat(stds) * sf])  # [2, F, C, h, w]
    return both.transpose(1, 2).numpy().astype(np.float16)


def npy_bytes(a: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, a, allow_pickle=False)
    return buf.getvalue()


def load_npy(data: bytes) -> np.ndarray:
    return np.load(io.BytesIO(data), allow_pickle=False)


def cache_shard(
    vae, url: str, out: str, spec: LatentSpec, chunk: int, device: str, dtype: torch.dtype
) -> tuple[int, int]:
    """One input shard into one output part (named after it); returns (samples written, rejects)."""
    part = posixpath.basename(url).removesuffix(".tar")
    written = rejected = 0
    scan = scan_shard(url, load=True)  # a damaged tar keeps what came before the damage, and says where
    with ShardWriter(out, prefix=part, part=part) as w:
        if scan.error:  # the samples after the damage cannot be named: one reject for the shard says so
            w.reject(part, STAGE, RejectReason.UNDECODABLE, f"shard unreadable: {scan.error}", uri=url)
            rejected += 1
        for key, m in scan.samples.items():
            try:
                if "mp4" not in m or "json" not in m:
                    raise ValueError("sample lacks .mp4 or .json")
                meta = json.loads(m["json"])
                frames, _ = decode_frames(m["mp4"])
                x = resize_for_latents(frames, spec.size, spec.factor)
                latents = encode_posterior(vae, x, chunk, device, dtype)
                caption = m["txt"].decode("utf-8", "replace") if "txt" in m else (meta.get("captions") or [""])[0]
                meta["latents"] = asdict(spec)
                # the writer checks key and metadata before it writes anything: a sample it refuses is a reject
                w.write(Sample(key, m["mp4"], caption, meta, extra={LATENTS_MEMBER: npy_bytes(latents)}))
            except Exception as e:  # a sample that cannot be encoded or written is a reject, never a crash
                w.reject(key, STAGE, RejectReason.UNDECODABLE, f"{type(e).__name__}: {e}", uri=url)
                rejected += 1
                continue
            written += 1
    return written, rejected


def cache_latents(
    pretrained: str,
    shards: str,
    out: str,
    size: int,
    device: str = "cuda",
    dtype: torch.dtype = torch.float32,
    chunk: int = 64,
    part: tuple[int, int] = (0, 1),
    progress: bool = True,
) -> dict[str, Any]:
    """Write ``out``: ``shards`` with latents (module docstring). ``part=(i, n)``: only every n-th input shard
    from the i-th; the index is merged when the last part is done (any process may finish it)."""
    from training.model.pretrained import load_vae

    i, n = part
    if not 0 <= i < n:
        raise ValueError(f"part must be I/N with 0 <= I < N, got {i}/{n}")
    urls = list_shards(shards)
    if not urls:
        raise FileNotFoundError(f"{shards}: no shards (*.tar)")
    # nn.Module.to: diffusers' own .to warns about dtype casts the VAE does not need here.
    vae = torch.nn.Module.to(load_vae(pretrained), device, dtype).eval()
    factor = 2 ** (len(vae.config.block_out_channels) - 1)
    if size % factor:
        raise ValueError(f"size {size} is not a multiple of the VAE's downsampling ({factor})")
    spec = LatentSpec(size, factor, float(vae.scaling_factor), vae_fingerprint(vae))
    fs, root = url_to_fs(out)
    fs.makedirs(root, exist_ok=True)
    info_path = posixpath.join(root, LATENTS_INFO)
    if fs.exists(info_path):
        old = read_spec(fs, info_path)
        if old != spec:
            raise ValueError(f"{out} holds latents made with {old}, not {spec}: use another --out")
    else:
        fs.pipe(info_path, json.dumps({"spec": asdict(spec), "source": shards, "pretrained": pretrained}).encode())
    done = complete_parts(out)
    ours = [u for k, u in enumerate(urls) if k % n == i]
    mine = [u for u in ours if posixpath.basename(u).removesuffix(".tar") not in done]
    written = rejected = 0
    for url in tqdm(mine, desc="latents", unit="shard", disable=not progress):
        a, b = cache_shard(vae, url, out, spec, chunk, device, dtype)
        written, rejected = written + a, rejected + b
    summary: dict[str, Any] = {"shards": len(mine), "skipped_done": len(ours) - len(mine), "samples": written,
                               "rejects": rejected, "spec": asdict(spec)}  # fmt: skip
    if len(complete_parts(out)) == len(urls):
        index, rejects = finalize(out)
        summary.update(index_samples=index.num_rows, index_rejects=rejects.num_rows)
    return summary


def set_spec(path: str) -> LatentSpec | None:
    """The :class:`LatentSpec` of a shard set made by :func:`cache_latents`, None for a set without latents."""
    fs, root = url_to_fs(path)
    info = posixpath.join(root, LATENTS_INFO)
    return read_spec(fs, info) if fs.exists(info) else None
