import json

import numpy as np

from inference.ablation import boundary_metrics, main
from inference.long_video import LongVideoConfig


def test_seams_and_metrics_see_a_jump():
    frames = 16  # clips: 0..5, 5..10, 10..15 in video indices
    seams = LongVideoConfig(6, 3).seam_steps(frames)
    assert seams == [5, 10] and LongVideoConfig(6, 3, reuse="shifted").seam_steps(frames) == [5, 8, 11, 14]
    smooth = np.repeat(np.linspace(0, 200, frames)[:, None, None, None], 4, axis=1).astype(np.uint8)
    smooth = np.broadcast_to(smooth, (frames, 4, 4, 3)).copy()
    jumpy = smooth.copy()
    jumpy[6:] = np.clip(jumpy[6:].astype(int) + 40, 0, 255)
    assert abs(boundary_metrics(smooth, seams)["ratio"] - 1.0) < 0.1
    assert boundary_metrics(jumpy, seams)["ratio"] > 2.0


def test_ablation_script_writes_table_json_and_plot(ckpt, tmp_path, capsys):
    args = ["--checkpoint", str(ckpt), "--prompt", "a red square", "--vary", "M=2,4", "--vary", "beta=0,1"]
    args += ["--frames", "15", "--clip-frames", "8", "--steps", "2", "--size", "32", "--out", str(tmp_path)]
    code = main(args)
    assert code == 0
    rows = json.loads((tmp_path / "results.json").read_text())["rows"]
    assert [(r["param"], r["value"]) for r in rows] == [("M", 2), ("M", 4), ("beta", 0.0), ("beta", 1.0)]
    assert all(r["within"] > 0 and r["ratio"] > 0 for r in rows)
    assert (tmp_path / "ablation.png").stat().st_size > 1000
    assert "| M | 2 |" in (tmp_path / "results.md").read_text()


def test_clip_similarity_with_a_local_clip_folder(ckpt, tmp_path):
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel

    cfg = CLIPConfig(
        text_config={"hidden_size": 16, "intermediate_size": 32, "num_hidden_layers": 1, "num_attention_heads": 2},
        vision_config={"hidden_size": 16, "intermediate_size": 32, "num_hidden_layers": 1, "num_attention_heads": 2,
                       "image_size": 32, "patch_size": 8},
        projection_dim=8,
    )  # fmt: skip
    clip_dir = tmp_path / "clip"
    CLIPModel(cfg).save_pretrained(clip_dir)
    CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}).save_pretrained(clip_dir)
    args = ["--checkpoint", str(ckpt), "--prompt", "a red square", "--vary", "alpha=0,2", "--frames", "15"]
    args += [
        "--clip-frames",
        "8",
        "--steps",
        "2",
        "--size",
        "32",
        "--clip",
        str(clip_dir),
        "--out",
        str(tmp_path / "o"),
    ]
    assert main(args) == 0
    rows = json.loads((tmp_path / "o" / "results.json").read_text())["rows"]
    for r in rows:
        assert -1.0 <= r["clip_boundary"] <= 1.0 and -1.0 <= r["clip_within"] <= 1.0
    assert "CLIP sim at seams" in (tmp_path / "o" / "results.md").read_text()
