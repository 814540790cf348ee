import subprocess
import sys

import pyarrow.parquet as pq
import pytest

from vidrd.cli import main


def test_help_lists_every_subcommand(capsys):
    with pytest.raises(SystemExit) as e:
        main(["--help"])
    out = capsys.readouterr().out
    assert e.value.code == 0
    for cmd in ("manifest", "curate", "shards", "train", "generate", "eval", "demo"):
        assert cmd in out


def test_console_script_entry_point_runs():
    r = subprocess.run([sys.executable, "-m", "vidrd.cli", "--version"], capture_output=True, text=True)
    assert r.returncode == 0 and r.stdout.startswith("vidrd ")


def test_demo_builds_every_manifest(tmp_path, capsys):
    assert main(["demo", "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    for source in ("kinetics700", "moments", "videolt", "laion", "webvid", "tgif", "vatex", "pexels"):
        m = tmp_path / "manifests" / f"{source}.parquet"
        r = tmp_path / "manifests" / f"{source}.rejects.parquet"
        assert pq.read_table(m).num_rows > 0 and r.exists()
        assert source in out
    assert "TINY RANDOM WEIGHTS" in out and "TINY RANDOM models" in out
    for source in ("kinetics700", "moments", "videolt"):  # the model stages ran and their shards verify
        assert f"verify {source}: OK" in out
        assert pq.read_table(tmp_path / "shards" / source / "_index.parquet").num_rows > 0
    assert (tmp_path / "long_video_segment.png").stat().st_size > 1000
    assert (tmp_path / "shard_contact_sheet.png").stat().st_size > 1000 and "contact sheet of webvid-" in out
    assert "training     6 steps" in out and (tmp_path / "train" / "checkpoints" / "last.ckpt").exists()
    from training.model.loading import load_vidrd

    trained = load_vidrd(str(tmp_path / "checkpoint")).unet  # the generated video comes from the trained model
    # the zero-init last Temp-Conv layers moved
    assert any(p.abs().sum() > 0 for n, p in trained.named_parameters() if n.endswith("temp_convs.0.convs.15.weight"))
    from media.video import decode_frames

    _, info = decode_frames(str(tmp_path / "long_video.mp4"))
    assert info.frames == 36


def test_library_log_records_reach_the_commands_stderr_once(capsys):
    import logging

    from vidrd.cli import configure_logging

    configure_logging()
    configure_logging()  # a second command in the same process adds no second handler
    logging.getLogger("curation.runner").warning("out/: partition p00001 is damaged (size); redoing it")
    logging.getLogger("training.unet_module").info("first training step: 1.0 s")
    logging.getLogger("training.unet_module").debug("not shown")
    assert capsys.readouterr().err.splitlines() == [
        "out/: partition p00001 is damaged (size); redoing it",
        "first training step: 1.0 s",
    ]
