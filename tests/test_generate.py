"""The generation pipeline and `vidrd generate` on a tiny random-weight VidRD checkpoint."""

import json

import numpy as np
import pytest
import torch
from PIL import Image

from inference.pipeline import VidRDPipeline, decode_latents, temporal_radius
from inference.prompts import PromptError, VideoRequest, read_prompts_file
from media.video import decode_frames
from tests.helpers import collect, settings
from vidrd.cli import main

SMALL = ["--steps", "3", "--height", "32", "--width", "32", "--clip-frames", "8", "--prompt-frames", "4"]


def test_frames_seeds_and_streaming(ckpt):
    pipe = VidRDPipeline.from_checkpoint(str(ckpt))
    chunks = list(pipe.generate([VideoRequest(["a red square"])], settings(), progress=False))
    assert [i for i, _ in chunks] == [0, 1, 2]
    assert [f.shape[1] for _, f in chunks] == [8, 7, 5]  # N, then N-1 per clip, cut to 20
    a = collect(pipe, [VideoRequest(["a red square"])], settings())
    b = collect(pipe, [VideoRequest(["a red square"])], settings())
    c = collect(pipe, [VideoRequest(["a red square"])], settings(seed=1))
    assert a.shape == (1, 20, 32, 32, 3) and a.dtype == np.uint8
    assert np.array_equal(a, b) and not np.array_equal(a, c)


def test_batch_of_prompts_matches_single_runs(ckpt):
    pipe = VidRDPipeline.from_checkpoint(str(ckpt))
    both = collect(pipe, [VideoRequest(["a cat"]), VideoRequest(["a dog"], seed=7)], settings())
    dog = collect(pipe, [VideoRequest(["a dog"], seed=7)], settings())
    assert np.abs(both[1].astype(int) - dog[0].astype(int)).max() <= 1


def test_chunked_decode_equals_whole_decode(ckpt):
    pipe = VidRDPipeline.from_checkpoint(str(ckpt))
    assert temporal_radius(pipe.vae) > 0
    z = torch.randn(1, 4, 7, 8, 8)
    whole, chunked = decode_latents(pipe.vae, z), decode_latents(pipe.vae, z, chunk=2)
    assert torch.allclose(whole, chunked, atol=1e-5)


@pytest.mark.parametrize("suffix", [".mp4", ".gif", ".png"])
def test_cli_writes_each_format(ckpt, tmp_path, suffix, capsys):
    out = tmp_path / f"v{suffix}"
    code = main(["generate", "--checkpoint", str(ckpt), "--prompt", "a red square", "--frames", "12", *SMALL,
                 "--out", str(out)])  # fmt: skip
    assert code == 0 and "12 frames" in capsys.readouterr().out
    if suffix == ".mp4":
        _, info = decode_frames(str(out))
        assert (info.frames, info.width, info.height) == (12, 32, 32)
    elif suffix == ".gif":
        assert Image.open(out).n_frames == 12
    else:
        assert Image.open(out).size == (12 * 32, 32)


def test_cli_story_and_prompts_file(ckpt, tmp_path, capsys):
    pf = tmp_path / "p.json"
    pf.write_text(json.dumps(["a cat", {"clips": {"0": "a cat", "1-9": "a dog"}, "seed": 3}]))
    code = main(["generate", "--checkpoint", str(ckpt), "--prompts-file", str(pf), "--frames", "15", *SMALL,
                 "--out", str(tmp_path / "s.gif")])  # fmt: skip
    assert code == 0
    assert Image.open(tmp_path / "s_000.gif").n_frames == 15 and Image.open(tmp_path / "s_001.gif").n_frames == 15
    code = main(["generate", "--checkpoint", str(ckpt), "--prompt", "a", "--prompt", "b", "--frames", "15", *SMALL,
                 "--out", str(tmp_path / "story.mp4")])  # fmt: skip
    assert code == 0


def test_cli_errors_are_clear(ckpt, tmp_path, capsys):
    assert main(["generate", "--checkpoint", str(ckpt), "--prompt", "x", "--out", str(tmp_path / "v.avi")]) == 2
    assert "--out must end in" in capsys.readouterr().err
    assert main(["generate", "--checkpoint", str(tmp_path), "--prompt", "x", "--out", str(tmp_path / "v.mp4")]) == 2
    assert "no unet/config.json" in capsys.readouterr().err
    args = ["generate", "--checkpoint", str(ckpt), "--prompt", "x", "--prompt-frames", "20", "--out", "v.mp4"]
    assert main(args) == 2 and "prompt_frames" in capsys.readouterr().err


def test_prompt_specs(tmp_path):
    assert VideoRequest(["a", "b"]).for_clips(4) == ["a", "b", "b", "b"]
    assert VideoRequest("a cat").for_clips(3) == ["a cat"] * 3  # one prompt, not one per character
    assert VideoRequest({"0-1": "a", "2": "b"}).for_clips(3) == ["a", "a", "b"]
    with pytest.raises(PromptError, match=r"clips \[2\] have no prompt"):
        VideoRequest({"0-1": "a"}).for_clips(3)
    with pytest.raises(PromptError, match="3 clip prompts for a video of 2 clips"):
        VideoRequest(["a", "b", "c"]).for_clips(2)
    t = tmp_path / "p.txt"
    t.write_text("a cat sleeps | the cat wakes\n\nbirds\n")
    reqs = read_prompts_file(t)
    assert [r.prompts for r in reqs] == [["a cat sleeps", "the cat wakes"], ["birds"]]
    (tmp_path / "bad.json").write_text("{")
    with pytest.raises(PromptError, match="invalid JSON"):
        read_prompts_file(tmp_path / "bad.json")
    (tmp_path / "deep.json").write_text("[" * 100_000 + "]" * 100_000)
    with pytest.raises(PromptError, match="nested too deeply"):
        read_prompts_file(tmp_path / "deep.json")
    (tmp_path / "latin1.txt").write_bytes("caf\xe9".encode("latin-1"))
    with pytest.raises(PromptError, match="not a readable UTF-8 text file"):
        read_prompts_file(tmp_path / "latin1.txt")


@pytest.mark.parametrize(
    "extra,message",
    [
        (["--frames", "0"], "frames must be in [1, 100000]"),
        (["--frames", "100000000"], "frames must be in [1, 100000]"),
        (["--height", "1048576"], "height and width must be in [1, 8192]"),
        (["--steps", "0"], "steps must be in"),
        (["--steps", "5000"], "steps must be in"),
        (["--height", "60"], "multiples of"),
        (["--height", "0"], "height and width must be in [1, 8192]"),
        (["--decode-chunk", "0"], "--decode-chunk must be >= 1"),
        (["--guidance", "nan"], "guidance must be a finite number"),
        (["--guidance-rescale", "1.5"], "guidance_rescale must be in [0, 1]"),
        (["--prompt", "two", "--prompt", "three", "--frames", "8"], "clip prompts for a video of 1 clips"),
    ],
)
def test_generate_refuses_bad_settings_before_any_model_work(ckpt, tmp_path, capsys, extra, message):
    out = tmp_path / "v.mp4"
    args = ["generate", "--checkpoint", str(ckpt), "--prompt", "one", "--clip-frames", "8", "--height", "32",
            "--width", "32", "--steps", "2", "--frames", "12", *extra, "--out", str(out)]  # fmt: skip
    assert main(args) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err and not out.exists()


@pytest.mark.parametrize(
    "damage,message",
    [
        ("empty-weights", "unet: cannot be loaded"),
        ("config-list", "unet/config.json: a JSON list, not a config object"),
        ("config-garbage", "unet/config.json: not a readable JSON config"),
        ("scheduler-values", "num_train_timesteps = 'x' is not a usable value"),
    ],
)
def test_generate_names_a_damaged_checkpoint_in_one_line(ckpt, tmp_path, capsys, damage, message):
    import shutil

    broken = tmp_path / "ckpt"
    shutil.copytree(ckpt, broken)
    if damage == "empty-weights":
        next((broken / "unet").glob("diffusion_pytorch_model.*")).write_bytes(b"")
    elif damage == "config-list":
        (broken / "unet" / "config.json").write_text("[1, 2]")
    elif damage == "config-garbage":
        (broken / "unet" / "config.json").write_text("{not json")
    else:
        (broken / "scheduler" / "scheduler_config.json").write_text('{"num_train_timesteps": "x"}')
    args = ["generate", "--checkpoint", str(broken), "--prompt", "x", "--clip-frames", "8", "--height", "32",
            "--width", "32", "--steps", "2", "--out", str(tmp_path / "v.mp4")]  # fmt: skip
    assert main(args) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_generate_names_a_missing_checkpoint_part_without_the_network(ckpt, tmp_path, capsys):
    import shutil

    broken = tmp_path / "ckpt"
    shutil.copytree(ckpt, broken)
    shutil.rmtree(broken / "vae")
    args = ["generate", "--checkpoint", str(broken), "--prompt", "x", "--out", str(tmp_path / "v.mp4")]
    assert main(args) == 2
    assert "no vae/config.json" in capsys.readouterr().err
