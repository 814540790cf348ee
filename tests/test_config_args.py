"""``--config FILE`` / ``--print-config`` of ``vidrd generate`` and ``vidrd eval ucf101``: a run saved as one YAML file
replays as the same run, options after the file override it, and a bad file is a one-line error."""

import numpy as np
import pytest
import yaml

from inference.config_args import ConfigFileError, expand_config
from media.video import decode_frames
from vidrd.cli import build_parser, main

SMALL = ["--steps", "3", "--height", "32", "--width", "32", "--clip-frames", "8", "--prompt-frames", "4"]


def printed_config(argv: list[str], capsys) -> dict:
    capsys.readouterr()
    assert main([*argv, "--print-config"]) == 0
    return yaml.safe_load(capsys.readouterr().out)


def test_a_printed_generate_config_replays_the_same_video(ckpt, tmp_path, capsys):
    out = tmp_path / "a.mp4"
    argv = ["generate", "--checkpoint", str(ckpt), "--prompt", "a red square", "--prompt", "a blue square",
            "--frames", "12", *SMALL, "--seed", "4", "--no-fast", "--out", str(out)]  # fmt: skip
    saved = printed_config(argv, capsys)
    assert not out.exists()  # --print-config runs nothing
    assert saved["prompt"] == ["a red square", "a blue square"] and saved["frames"] == 12 and saved["no_fast"] is True
    assert saved["steps"] == 3 and saved["guidance"] == 10.0 and saved["schedule"] == "paper"  # defaults written too
    config = tmp_path / "run.yaml"
    config.write_text(yaml.safe_dump({**saved, "out": str(tmp_path / "b.mp4")}))
    assert main(argv) == 0 and main(["generate", "--config", str(config)]) == 0
    a, b = decode_frames(str(out))[0], decode_frames(str(tmp_path / "b.mp4"))[0]
    assert a.shape == b.shape == (12, 32, 32, 3) and np.array_equal(a, b)
    # after the file: the command line wins; before it: the file wins
    assert printed_config(["generate", "--config", str(config), "--frames", "9"], capsys)["frames"] == 9
    assert printed_config(["generate", "--frames", "9", f"--config={config}"], capsys)["frames"] == 12


def test_eval_ucf101_takes_a_config_file(tmp_path, capsys):
    config = tmp_path / "eval.yaml"
    config.write_text("ucf-root: /data/UCF-101\ni3d: i3d.pt\nc3d: c3d.pt\nout: r.json\nnum_videos: 2048\n")
    saved = printed_config(["eval", "ucf101", "--config", str(config)], capsys)
    assert saved["ucf_root"] == "/data/UCF-101" and saved["num_videos"] == 2048 and saved["steps"] == 50


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("frames: 12\nframez: 3\n", "'framez' is not an option of this command"),
        ("- 1\n- 2\n", "expected a mapping"),
        ("frames: [1, 2]\n", "frames takes one value"),
        ("no_fast: maybe\n", "no_fast must be true or false"),
        ("frames: {\n", "not YAML"),
    ],
)
def test_a_bad_config_file_is_one_line_naming_it(tmp_path, capsys, text, message):
    config = tmp_path / "bad.yaml"
    config.write_text(text)
    assert main(["generate", "--config", str(config), "--checkpoint", "x", "--prompt", "p", "--out", "o.mp4"]) == 2
    err = capsys.readouterr().err
    assert message in err and str(config) in err and len(err.strip().splitlines()) == 1


def test_a_missing_file_and_a_missing_name_are_refused(tmp_path):
    parser = build_parser()
    with pytest.raises(ConfigFileError, match="cannot read"):
        expand_config(parser, ["generate", "--config", str(tmp_path / "none.yaml")])
    with pytest.raises(ConfigFileError, match="needs a file"):
        expand_config(parser, ["generate", "--config"])


def test_a_command_with_its_own_config_option_keeps_it(tmp_path):
    argv = ["curate", "captioned", "--config", str(tmp_path / "stage.yaml")]
    assert expand_config(build_parser(), argv) == argv  # curate's --config is its stage settings file
