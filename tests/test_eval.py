"""UCF-101 evaluation: prompts, class allocation, FVD / IS maths, I3D / C3D layouts, the CLI end to end."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch

from inference.eval.c3d import C3D, C3DProbabilities
from inference.eval.c3d import published_keys as c3d_keys
from inference.eval.i3d import I3DFeatures, InceptionI3d
from inference.eval.i3d import published_keys as i3d_keys
from inference.eval.metrics import FeatureStats, frechet_distance, inception_score
from inference.eval.ucf101 import (
    UCF101_CLASSES,
    allocate,
    class_counts_from_trainlist,
    prompts,
    read_class_index,
)
from media.video import encode_mp4
from vidrd.cli import main
from vidrd.synthetic import moving_square


def test_prompts_cover_all_101_classes(tmp_path):
    p = prompts()
    assert len(UCF101_CLASSES) == len(set(UCF101_CLASSES)) == 101 and set(p) == set(UCF101_CLASSES)
    assert p["Diving"] == "diver diving into a swimming pool from a springboard" and p["YoYo"] == "a kid playing Yo-Yo"
    assert all(v.strip() for v in p.values())
    ind = tmp_path / "classInd.txt"
    ind.write_text("".join(f"{i + 1} {c}\n" for i, c in enumerate(UCF101_CLASSES)))
    assert read_class_index(ind) == list(UCF101_CLASSES)


def test_allocation_follows_counts_exactly_and_is_seeded():
    counts = {"Archery": 3, "Diving": 1, "YoYo": 6}
    a = allocate(counts, 20, seed=1)
    assert Counter(a) == {"Archery": 6, "Diving": 2, "YoYo": 12}
    assert a == allocate(counts, 20, seed=1) and a != allocate(counts, 20, seed=2)
    assert len(allocate(counts, 7)) == 7


def test_frechet_distance_matches_scipy_and_behaves():
    linalg = pytest.importorskip("scipy.linalg")
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(500, 16)), rng.normal(size=(400, 16)) @ rng.normal(size=(16, 16)) * 0.5 + 0.3
    a, b = FeatureStats.of(x), FeatureStats.of(y)
    covmean = linalg.sqrtm(a.sigma @ b.sigma).real
    ref = ((a.mu - b.mu) ** 2).sum() + np.trace(a.sigma + b.sigma - 2 * covmean)
    assert frechet_distance(a, b) == pytest.approx(ref, rel=1e-6)
    assert abs(frechet_distance(a, a)) < 1e-8
    shifts = [frechet_distance(a, FeatureStats.of(x + s)) for s in (0.1, 0.5, 1.0)]
    assert shifts == sorted(shifts) and shifts[0] > 0 and shifts[2] == pytest.approx(16.0, rel=1e-6)


def test_inception_score_extremes():
    const = np.tile(np.array([0.2, 0.3, 0.5]), (40, 1))
    assert inception_score(const)[0] == pytest.approx(1.0)
    perfect = np.eye(5)[np.arange(50) % 5]  # confident and uniform over classes
    mean, std = inception_score(perfect)
    assert mean == pytest.approx(5.0, rel=1e-6) and std == pytest.approx(0.0, abs=1e-6)


def test_i3d_and_c3d_layouts_match_the_published_keys():
    assert sorted(InceptionI3d(width=1 / 16).state_dict()) == sorted(i3d_keys())
    assert sorted(InceptionI3d().state_dict()) == sorted(i3d_keys())  # the full-size network, same names
    assert sorted(C3D(width=1 / 16).state_dict()) == sorted(c3d_keys())
    shapes = {k: tuple(v.shape) for k, v in InceptionI3d().state_dict().items()}
    assert shapes["Mixed_5c.b0.conv3d.weight"] == (384, 832, 1, 1, 1) and shapes["logits.conv3d.weight"][0] == 400
    full_c3d = {k: tuple(v.shape) for k, v in C3D().state_dict().items()}
    assert full_c3d["fc6.weight"] == (4096, 8192) and full_c3d["fc8.weight"] == (101, 4096)


def _videos(n: int, frames: int = 16, size: int = 48) -> np.ndarray:
    cs, ds = ["red", "green", "blue", "yellow"], ["right", "left", "up", "down"]
    return np.stack([moving_square(cs[i % 4], ds[i % 4], frames=frames, width=size, height=size, seed=i)
                     for i in range(n)])  # fmt: skip


def test_feature_extractors_load_state_dicts_and_torchscript(tmp_path):
    torch.manual_seed(0)
    torch.save(InceptionI3d(width=1 / 16).state_dict(), tmp_path / "i3d.pt")
    net = C3D(width=1 / 16)
    torch.save({k.replace("conv1a.", "conv1."): v for k, v in net.state_dict().items()}, tmp_path / "c3d.pt")
    videos = _videos(3)
    feats = I3DFeatures(tmp_path / "i3d.pt")(videos)
    assert feats.shape == (3, 400) and feats.dtype == np.float64 and np.isfinite(feats).all()
    probs = C3DProbabilities(tmp_path / "c3d.pt")(videos)
    assert probs.shape == (3, 101) and np.allclose(probs.sum(1), 1)

    class Scripted(torch.nn.Module):  # the i3d_torchscript.pt calling convention
        def __init__(self, net: torch.nn.Module):
            super().__init__()
            self.net = net

        def forward(self, x: torch.Tensor, rescale: bool = False, resize: bool = False, return_features: bool = False):
            return self.net(x)

    i3d = InceptionI3d(width=1 / 16).eval()
    i3d.load_state_dict(torch.load(tmp_path / "i3d.pt"))
    traced = torch.jit.trace(i3d, torch.zeros(1, 3, 16, 224, 224))
    torch.jit.script(Scripted(traced)).save(str(tmp_path / "i3d_torchscript.pt"))
    assert np.allclose(I3DFeatures(tmp_path / "i3d_torchscript.pt")(videos), feats, atol=1e-5)


@pytest.fixture(scope="module")
def ucf(tmp_path_factory) -> Path:
    """A UCF-101-shaped folder: 3 classes x 3 clips, one clip too short, and the split files."""
    root = tmp_path_factory.mktemp("ucf")
    classes = ["Archery", "Diving", "YoYo"]
    lines = []
    for k, c in enumerate(classes):
        for g in range(3):
            frames = 10 if (c, g) == ("YoYo", 2) else 24
            v = moving_square(["red", "green", "blue"][k], ["right", "left", "up"][g], frames=frames, width=64,
                              height=48, seed=k * 3 + g)  # fmt: skip
            path = root / "UCF-101" / c / f"v_{c}_g0{g + 1}_c01.mp4"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(encode_mp4(v, 25.0))
            lines.append(f"{c}/{path.name} {UCF101_CLASSES.index(c) + 1}")
    split = root / "ucfTrainTestlist"
    split.mkdir()
    (split / "trainlist01.txt").write_text("\n".join(lines[:-1]) + "\n")  # Archery 3, Diving 3, YoYo 2
    (split / "classInd.txt").write_text("".join(f"{i + 1} {c}\n" for i, c in enumerate(UCF101_CLASSES)))
    torch.manual_seed(0)
    torch.save(InceptionI3d(width=1 / 16).state_dict(), root / "i3d.pt")
    torch.save(C3D(width=1 / 16).state_dict(), root / "c3d.pt")
    return root


def eval_args(ucf: Path, ckpt: Path | None, out: Path, *extra: str) -> list[str]:
    base = ["eval", "ucf101", "--ucf-root", str(ucf), "--i3d", str(ucf / "i3d.pt"), "--c3d", str(ucf / "c3d.pt"),
            "--num-videos", "4", "--num-real", "9", "--steps", "2", "--size", "32", "--batch", "2",
            "--spread", "local", "--out", str(out)]  # fmt: skip
    return base + (["--checkpoint", str(ckpt)] if ckpt else []) + list(extra)


def test_eval_cli_end_to_end_and_resumable(ucf, ckpt, tmp_path, capsys):
    out = tmp_path / "report.json"
    assert main(eval_args(ucf, ckpt, out)) == 0
    rep = json.loads(out.read_text())
    assert rep["generated"] == 4 and np.isfinite(rep["fvd"]) and rep["fvd"] > 0
    assert 1.0 <= rep["is_mean"] <= 101 and "trainlist01.txt" in rep["class_distribution"]
    assert rep["real_videos"] == 8 and list(rep["real_rejected"].values()) == ["10 frames < 16"]
    table = out.with_suffix(".md").read_text()
    assert "363.19" in table and "39.37" in table and "this checkpoint" in table
    videos = sorted((tmp_path / "ucf101-work" / "videos").glob("*.mp4"))
    assert len(videos) == 4 and {v.stem.split("_", 1)[1] for v in videos} <= {"Archery", "Diving", "YoYo"}
    stamps = [v.stat().st_mtime_ns for v in videos]
    # A second run regenerates nothing and, from the saved videos and cached statistics, gives the same numbers.
    assert main(eval_args(ucf, ckpt, out)) == 0
    assert [v.stat().st_mtime_ns for v in videos] == stamps
    assert json.loads(out.read_text())["fvd"] == pytest.approx(rep["fvd"])
    assert main(eval_args(ucf, None, tmp_path / "again.json")) == 0  # metrics only, from the same work folder
    capsys.readouterr()
    assert main(eval_args(ucf, ckpt, out, "--seed", "1")) == 2  # other settings never mix into the same folder
    assert "other settings" in capsys.readouterr().err
    plan = tmp_path / "ucf101-work" / "plan.json"
    kept = plan.read_text()
    plan.write_text("[1, 2]")  # a plan that is not one: named, never a traceback
    assert main(eval_args(ucf, None, tmp_path / "plan.json")) == 2
    assert "plan.json is not this command's plan" in capsys.readouterr().err
    plan.write_text(kept)
    videos[0].write_bytes(videos[0].read_bytes()[:300])  # a damaged saved video is named, not skipped
    assert main(eval_args(ucf, None, tmp_path / "damaged.json")) == 2
    assert videos[0].name in capsys.readouterr().err


def test_eval_says_which_file_is_missing(ucf, ckpt, tmp_path, capsys):
    args = eval_args(ucf, ckpt, tmp_path / "r.json")
    args[args.index("--i3d") + 1] = str(tmp_path / "nope.pt")
    assert main(args) == 2
    assert "i3d_torchscript.pt" in capsys.readouterr().err
    args = eval_args(tmp_path / "empty", ckpt, tmp_path / "r.json")
    args[args.index("--i3d") + 1], args[args.index("--c3d") + 1] = str(ucf / "i3d.pt"), str(ucf / "c3d.pt")
    assert main(args) == 2
    assert "UCF101" in capsys.readouterr().err


def test_trainlist_with_unknown_class_is_refused(tmp_path):
    f = tmp_path / "trainlist01.txt"
    f.write_text("NotAClass/v_x.avi 1\n")
    with pytest.raises(FileNotFoundError, match="not in UCF-101"):
        class_counts_from_trainlist(f)


@pytest.mark.slow
def test_generation_spreads_over_device_processes(ckpt, tmp_path):
    from inference.eval.ucf101_eval import EvalSettings, generate_everywhere, plan

    settings = EvalSettings(num_videos=3, steps=2, height=32, width=32, batch=2)
    jobs = plan({"Archery": 1, "Diving": 1}, settings, tmp_path)
    generate_everywhere(str(ckpt), jobs, settings, "gpus", torch.float32, devices=["cpu", "cpu"])  # 2 processes
    assert all(j.path.exists() for j in jobs) and not list(tmp_path.rglob("*.tmp"))


def test_clipsim_with_a_tiny_clip(tmp_path):
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel, CLIPProcessor

    from inference.eval.metrics import ClipSimilarity
    from training.model.tiny import write_char_tokenizer

    tok = write_char_tokenizer(tmp_path / "tok")
    cfg = CLIPConfig(
        text_config=dict(vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                         num_attention_heads=2, max_position_embeddings=77, bos_token_id=0, eos_token_id=1,
                         pad_token_id=1),
        vision_config=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2,
                           image_size=32, patch_size=8),
        projection_dim=16,
    )  # fmt: skip
    torch.manual_seed(0)
    CLIPModel(cfg).save_pretrained(tmp_path / "clip")
    image_proc = CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32})
    CLIPProcessor(image_processor=image_proc, tokenizer=tok).save_pretrained(tmp_path / "clip")
    sim = ClipSimilarity(tmp_path / "clip")
    video = _videos(1, frames=4)[0]
    s = sim(video, "a red square")
    assert -1.0 <= s <= 1.0
    # the mean over frames: equal to scoring each frame alone and averaging
    assert s == pytest.approx(np.mean([sim(video[i : i + 1], "a red square") for i in range(4)]), abs=1e-5)
    assert sim(video, "a red square") != pytest.approx(sim(video, "blue"), abs=1e-6)


@pytest.mark.slow
def test_generation_spreads_over_ray_tasks(ucf, ckpt, tmp_path):
    import ray

    from inference.eval.ucf101_eval import EvalSettings, generate_everywhere, plan

    settings = EvalSettings(num_videos=4, steps=2, height=32, width=32, batch=2)
    jobs = plan({"Archery": 1, "Diving": 1}, settings, tmp_path)
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        generate_everywhere(str(ckpt), jobs, settings, "ray", torch.float32, ray_workers=2, ray_gpus=0)
    finally:
        ray.shutdown()
    assert all(j.path.exists() for j in jobs)
    # the same videos as one local process makes (per-video seeds do not depend on the split; batches are
    # composed differently, so float rounding may move a pixel level here and there)
    local = plan({"Archery": 1, "Diving": 1}, settings, tmp_path / "local")
    generate_everywhere(str(ckpt), local, settings, "local", torch.float32)
    from media.video import decode_frames

    for a, b in zip(jobs, local, strict=True):
        va, vb = decode_frames(str(a.path))[0].astype(int), decode_frames(str(b.path))[0].astype(int)
        assert np.abs(va - vb).mean() < 0.5, np.abs(va - vb).mean()


@pytest.mark.parametrize("content", [b"not a model at all", "pickled-object", "wrong-keys"])
def test_a_weights_file_that_is_not_the_network_is_a_clear_error(tmp_path, content):
    path = tmp_path / "i3d.pt"
    if content == "pickled-object":
        torch.save({"model": Path("x")}, path)
    elif content == "wrong-keys":
        torch.save({"fc.weight": torch.zeros(2, 2)}, path)
    else:
        path.write_bytes(content)
    with pytest.raises(ValueError, match="not a TorchScript model nor a weights file this network loads"):
        I3DFeatures(path)


def test_real_videos_of_different_sizes_are_scored(tmp_path):
    from inference.eval.ucf101_eval import score_by_shape

    calls = []

    def net(batch: np.ndarray) -> np.ndarray:
        calls.append(batch.shape)
        return batch.reshape(len(batch), -1)[:, :2].astype(np.float64)

    videos = [np.zeros((16, 48, 64, 3), np.uint8), np.ones((16, 48, 64, 3), np.uint8),
              np.zeros((16, 60, 80, 3), np.uint8), np.zeros((16, 48, 64, 3), np.uint8)]  # fmt: skip
    out = np.concatenate(score_by_shape(net, videos))
    assert out.shape == (4, 2) and calls == [(2, 16, 48, 64, 3), (1, 16, 60, 80, 3), (1, 16, 48, 64, 3)]
    assert out[1, 0] == 1 and out[0, 0] == 0  # order kept
