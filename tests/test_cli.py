import subprocess
import sys

import pyarrow.parquet as pq
import pytest

from vidrd.cli import NOT_BUILT, main


def test_help_lists_every_subcommand(capsys):
    with pytest.raises(SystemExit) as e:
        main(["--help"])
    out = capsys.readouterr().out
    assert e.value.code == 0
    for cmd in ("manifest", "curate", "shards", "train", "generate", "eval", "demo"):
        assert cmd in out


@pytest.mark.parametrize("cmd", sorted(NOT_BUILT))
def test_unbuilt_subcommands_say_so_and_exit_2(cmd, capsys):
    assert main([cmd, "anything"]) == 2
    assert "not built yet" in capsys.readouterr().err


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
    assert "not run yet" in out and "TINY RANDOM WEIGHTS" in out
    from curation.video_io import decode_frames

    _, info = decode_frames(str(tmp_path / "long_video.mp4"))
    assert info.frames == 36
