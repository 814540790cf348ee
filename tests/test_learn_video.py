"""Issue 20's learning proof, on CPU: the measurements are right on the generator's own clips, the data goes
through the product's manifest builder, the long-video option, and the report command (bad input included)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from examples import learn_video as lv
from examples.video_measures import colour_labels, measure, seam_figures
from media.video import decode_frames, encode_mp4
from training.model.tiny import TINY_TEXT
from vidrd.synthetic import COLOURS, DIRECTIONS, moving_shape


def roundtrip(video: np.ndarray) -> np.ndarray:
    return decode_frames(encode_mp4(video, 8.0))[0]


@pytest.mark.parametrize("shape", ["square", "circle"])
@pytest.mark.parametrize("background", ["flat", "textured"])
def test_true_clips_measure_as_their_caption(shape, background):
    for k, (colour, direction) in enumerate([(c, d) for c in COLOURS for d in DIRECTIONS]):
        video = roundtrip(moving_shape(colour, direction, shape, 16, 64, 1.0 + (k % 2) * 0.5, background, seed=k))
        m = measure(video, colour, direction)
        assert m["colour_ok"] and m["direction_ok"] and m["sign_ok"], (colour, direction, m)
        assert m["present"] == 1.0 and m["flicker_frames"] == 0 and m["colour_share"] == 1.0
        assert 0.8 < m["speed"] / (1.0 + (k % 2) * 0.5) < 1.2 and m["angle_error"] < 10
        assert m["background_error"] < 0.02  # a still background


def test_wrong_clips_fail_the_measures():
    video = roundtrip(moving_shape("red", "right", "circle", 16, 64, 1.5, "textured", seed=3))
    backwards = measure(video[::-1], "red", "right")
    assert not backwards["direction_ok"] and not backwards["sign_ok"] and backwards["angle_error"] > 170
    assert not measure(video, "red", "up")["direction_ok"]  # perpendicular
    assert not measure(video, "blue", "right")["colour_ok"]
    gaps = video.copy()
    for t in (3, 9):  # the object vanishes in two frames
        gaps[t][colour_labels(video[t : t + 1])[0] >= 0] = 128
    m = measure(gaps, "red", "right")
    assert m["present"] == pytest.approx(14 / 16) and m["flicker_frames"] == 2
    still = measure(np.repeat(video[:1], 16, axis=0), "red", "right")
    assert not still["direction_ok"] and still["speed"] < 0.01  # a frozen object does not move


def test_seam_figures_tell_a_jump_from_a_step():
    track = np.stack([np.arange(20, dtype=float), np.zeros(20)], axis=1)
    smooth = seam_figures(track, [9], "right")
    assert smooth["jump_ratio"] == [1.0] and smooth["after_motion"] == [1.0] and smooth["median_step"] == 1.0
    jumped = track.copy()
    jumped[10:, 0] += 15
    assert seam_figures(jumped, [9], "right")["jump_ratio"] == [16.0]
    # A clip that keeps the reused frames and snaps back to its path's start two frames later is a jump too.
    snap = track.copy()
    snap[11:, 0] -= 12
    snapped = seam_figures(snap, [9], "right")
    assert snapped["jump_ratio"] == [11.0] and snapped["after_motion"][0] < -0.25
    # The reflection the reversed reuse makes: the object turns at the seam at its usual speed, no jump.
    reflect = track.copy()
    reflect[10:, 0] = 9 - np.arange(1, 11)
    reflected = seam_figures(reflect, [9], "right")
    assert reflected["jump_ratio"] == [1.0] and reflected["after_motion"] == [-1.0]
    frozen = track.copy()
    frozen[10:, 0] = 10
    assert seam_figures(frozen, [9], "right")["after_motion"][0] < 0.25


def test_data_is_webvid_layout_without_the_held_out_combinations(tmp_path):
    from manifests.builders import webvid

    n = lv.make_data(tmp_path / "webvid", per_combo=1, frames=8, size=32)
    assert n == len(lv.all_combos()) - len(lv.HELD_OUT) == 28
    built = webvid.build(str(tmp_path / "webvid"))
    assert len(built.rows) == n and not built.rejects  # every clip is a manifest row
    captions = {r["captions"][0] for r in built.rows}
    assert not captions & {lv.caption(*c) for c in lv.HELD_OUT}
    words = " ".join(captions).split()
    for colour, direction, shape in lv.HELD_OUT:  # each held-out word is still taught elsewhere
        assert colour in words and direction in words and shape in words
    assert json.loads((tmp_path / "webvid" / "learn_video.json").read_text())["held_out"]


def test_fnr_off_starts_every_clip_from_fresh_noise():
    from inference.long_video import LongVideoConfig, generate_latent_clips
    from inference.sampler import DDIMSampler, make_scheduler

    seen = []

    def denoiser(z, t, c, contexts_per_sample=1):
        return torch.zeros(contexts_per_sample * z.shape[0], *z.shape[1:])

    denoiser.accepts_contexts_per_sample = True

    class Spy:
        def __call__(self, k, t, z):
            return z

    sampler = DDIMSampler(denoiser, make_scheduler(), 2, 1.0)
    real = sampler.sample

    def sample(z, cond, uncond, step_hook=None):
        seen.append(z.clone())
        return real(z, cond, uncond, step_hook)

    sampler.sample = sample
    ctx = torch.zeros(1, 3, 4)
    for fnr in (True, False):
        seen.clear()
        cfg = LongVideoConfig(6, 2, 1.0, 1.0, fnr=fnr)
        list(
            generate_latent_clips(
                sampler, lambda i: (ctx, ctx), 2, (2, 6, 4, 4), cfg, [torch.Generator().manual_seed(0)]
            )
        )
        reused = torch.equal(seen[1][:, :, :2], seen[0].flip(2)[:, :, :2])
        assert reused == fnr


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("lv")
    tiny_unet = dict(sample_size=16, block_out_channels=(32, 64), layers_per_block=1, attention_head_dim=(2, 4),
                     down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"), cross_attention_dim=32,
                     up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"))  # fmt: skip
    check = lv.make_base(root / "base", vae_steps=2, device="cpu", unet=tiny_unet, text=TINY_TEXT, check_clips=2)
    assert check["clips"] == 2 and json.loads((root / "base" / "autoencoder_check.json").read_text()) == check
    return root


def test_report_writes_what_it_measured(tiny_run, tmp_path):
    prompts = ["a red square moving right", "a red circle moving left"]  # the second is held out
    out = tmp_path / "report"
    res = lv.report(tiny_run / "base", out, seeds=2, prompts=prompts, vae=tiny_run / "base" / "vae", steps=2,
                    long_seeds=1, videos_per_prompt=1, long_prompts=lv.LONG_PROMPTS[:1], vae_clips=2,
                    size=32)  # fmt: skip
    saved = json.loads((out / "report.json").read_text())
    # The base is v-prediction on the zero-terminal-SNR schedule, so the report rescales guidance (0.7).
    assert saved["settings"]["schedule"] == {"prediction_type": "v_prediction", "rescale_betas_zero_snr": True,
                                             "timestep_spacing": "trailing"}  # fmt: skip
    assert saved["settings"]["guidance_rescale"] == 0.7
    assert saved["held_out_prompts"] == ["a red circle moving left"]
    assert [r["held_out"] for r in saved["videos"]] == [False, False, True, True]
    assert set(saved["targets"]) == set(lv.TARGETS) and saved["summary"]["held_out"]["videos"] == 2
    # The saved videos are what their rows say: re-measured from the files, the figures are the same.
    for row in (r for r in saved["videos"] if "file" in r):
        colour, direction, _ = lv.parse_caption(row["prompt"])
        again = measure(decode_frames(str(out / row["file"]))[0], colour, direction)
        assert {k: again[k] for k in again if k != "track"} == {k: row[k] for k in again if k != "track"}
    assert set(saved["long_video"]["settings"]) == set(lv.LONG_SETTINGS)
    assert saved["long_video"]["seams"] == [15, 30, 45]
    per_setting = {name: len(rows) for name, rows in saved["long_video"]["videos"].items()}
    assert per_setting == dict.fromkeys(lv.LONG_SETTINGS, 1)
    assert all(len(r["track"]) == 61 for rows in saved["long_video"]["videos"].values() for r in rows)
    for row in saved["long_video"]["settings"].values():  # every measured seam is exactly one of the four
        kinds = [row[k] for k in ("jumps_at_seam", "continues_after_seam", "reflects_at_seam", "frozen_after_seam")]
        assert kinds == [None] * 4 or abs(sum(kinds) - 1) < 0.005
    assert (out / "long_video_tracks.png").stat().st_size > 1000
    assert set(saved["vae_flicker"]) == {"2d", "temporal"}
    assert (out / "red-square-right.png").exists() and res["summary"]["all"]["videos"] == 4


def test_report_refuses_bad_input(tiny_run, tmp_path, capsys):
    ckpt = tiny_run / "base"
    broken = tmp_path / "broken"
    broken.mkdir()
    for part in ("unet", "text_encoder", "tokenizer", "scheduler"):  # no vae/
        (broken / part).symlink_to(ckpt / part)
    assert lv.main(["report", "--checkpoint", str(broken), "--out", str(tmp_path / "a")]) == 2
    assert "no vae/" in capsys.readouterr().err
    empty = tmp_path / "prompts.txt"
    empty.write_text("\n \n")
    assert lv.main(["report", "--checkpoint", str(ckpt), "--out", str(tmp_path / "b"), "--prompts", str(empty)]) == 2
    assert "prompt list is empty" in capsys.readouterr().err
    (tmp_path / "c").mkdir()
    (tmp_path / "c" / "report.json").write_text("{}")
    args = ["report", "--checkpoint", str(ckpt), "--out", str(tmp_path / "c")]
    assert lv.main(args) == 2 and "--force" in capsys.readouterr().err
    assert (tmp_path / "c" / "report.json").read_text() == "{}"  # untouched
    with pytest.raises(lv.ReportError, match="not 'a <colour> <shape> moving <direction>'"):
        lv.parse_caption("a dog running")
