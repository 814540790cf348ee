"""The learning proof on CPU: the measurements are right on the generator's own clips (short and long videos),
the data goes through the product's manifest builder, and the report command works (bad input included)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from examples import learn_video as lv
from examples.video_measures import colour_labels, long_video_figures, measure
from media.video import decode_frames, encode_mp4
from tests.helpers import TINY_EXAMPLE_UNET
from training.model.tiny import TINY_TEXT
from vidrd.synthetic import COLOURS, DIRECTIONS, moving_shape, object_side, travel_frames, travelling_shape


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


@pytest.mark.parametrize("shape", ["square", "circle"])
def test_a_travelling_object_crosses_the_frame_steadily_and_stays_in_view(shape):
    for k, direction in enumerate(DIRECTIONS):
        speed = (0.5, 0.75)[k % 2]
        video = travelling_shape("blue", direction, shape, 64, speed, ("flat", "textured")[k % 2], seed=k)
        assert len(video) == travel_frames(64, speed) and len(video) * speed > 50  # the whole frame, several clips
        objects = colour_labels(video) >= 0
        assert not objects[:, 0].any() and not objects[:, -1].any()  # never touches the border
        assert not objects[:, :, 0].any() and not objects[:, :, -1].any()
        saved = roundtrip(video)
        for start in (0, len(video) // 2, len(video) - 16):  # a clip cut anywhere moves the same way
            m = measure(saved[start : start + 16], "blue", direction)
            assert m["direction_ok"] and abs(m["speed"] - speed) < 0.1 and m["present"] == 1.0
            assert m["frame_shapes"].count(shape) >= 12  # single frames may be misread; the clip's majority is not
    with pytest.raises(ValueError, match="cannot travel"):
        travel_frames(16, 0.5, side=16)
    assert object_side(64) == 11


def crossing(
    direction: str = "right", shape: str = "square", colour: str = "green", seed: int = 1, saved: bool = True
) -> np.ndarray:
    video = travelling_shape(colour, direction, shape, 64, 0.5, "textured", seed)
    return roundtrip(video) if saved else video


def test_a_true_long_video_holds_together():
    for shape in ("square", "circle"):
        for direction in DIRECTIONS:
            r = long_video_figures(crossing(direction, shape)[:61], "green", direction, shape, [15, 30, 45])
            assert r["coherent"] and r["no_jump"] and r["continues"] and r["keeps_object"], (shape, direction, r)
            assert 0.45 < r["median_step"] < 0.6 and r["forward_jump"] < 2 and r["sideways_jump"] < 1
            assert r["clip_shapes"] == [shape] * 4 and r["clip_colours"] == ["green"] * 4 and r["jump_steps"] == []


def test_long_video_measure_finds_each_way_of_falling_apart():
    v = crossing()
    snap = np.concatenate([v[:16], v[8:23], v[16:31]])  # each new clip restarts 8 frames back
    r = long_video_figures(snap, "green", "right", "square", [15, 30])
    assert r["backward_jump"] > 5 and not r["no_jump"] and not r["coherent"]
    assert r["jump_steps"] == [15, 30]  # the steps from each clip's last frame to the next clip's first
    reflect = np.concatenate([v[:16], v[14:7:-1], v[8:24]])  # the mirror at the seam: back at the usual speed
    r = long_video_figures(reflect, "green", "right", "square", [15])
    assert r["no_jump"] and r["after_seam"][0] < 0 and not r["continues"] and not r["coherent"]
    assert r["jump_steps"] == []  # turning back at the usual speed is no jump
    up = crossing("up")
    sideways = np.concatenate([v[:16], up[40:56]])
    r = long_video_figures(sideways, "green", "right", "square", [15])
    assert r["sideways_jump"] > 3 and not r["coherent"] and r["jump_steps"] == [15]
    recoloured = np.concatenate([v[:16], crossing(colour="blue")[16:32]])
    r = long_video_figures(recoloured, "green", "right", "square", [15])
    assert r["clip_colours"] == ["green", "blue"] and not r["keeps_object"] and not r["coherent"]
    reshaped = np.concatenate([v[:16], crossing(shape="circle")[16:32]])
    r = long_video_figures(reshaped, "green", "right", "square", [15])
    assert r["clip_shapes"] == ["square", "circle"] and not r["keeps_object"]
    with pytest.raises(ValueError, match="unknown shape"):
        long_video_figures(v[:32], "green", "right", "triangle", [15])


def test_an_object_at_the_frame_edge_may_stop_but_not_turn_back():
    v = crossing(saved=False)
    end = len(v) - 1
    stops = np.concatenate([v[end - 15 :], np.repeat(v[end:], 16, axis=0)])
    r = long_video_figures(stops, "green", "right", "square", [15])
    assert r["at_edge"] == [True] and r["continues"] and r["coherent"]
    bounces = np.concatenate([v[end - 15 :], v[end - 1 : end - 17 : -1]])
    r = long_video_figures(bounces, "green", "right", "square", [15])
    assert r["at_edge"] == [True] and not r["continues"]


def test_data_is_webvid_layout_without_the_held_out_combinations(tmp_path):
    from manifests.builders import webvid

    n = lv.make_data(tmp_path / "webvid", per_combo=1, size=32)
    assert n == len(lv.all_combos()) - len(lv.HELD_OUT) == 28
    built = webvid.build(str(tmp_path / "webvid"))
    assert len(built.rows) == n and not built.rejects  # every clip is a manifest row
    captions = {r["captions"][0] for r in built.rows}
    assert not captions & {lv.caption(*c) for c in lv.HELD_OUT}
    words = " ".join(captions).split()
    for colour, direction, shape in lv.HELD_OUT:  # each held-out word is still taught elsewhere
        assert colour in words and direction in words and shape in words
    meta = json.loads((tmp_path / "webvid" / "learn_video.json").read_text())
    assert meta["held_out"] and meta["frames"] == [travel_frames(32, lv.SPEEDS[0])]  # one video each: the first speed


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

    def sample(z, cond, uncond, step_hook=None, **resampling):
        seen.append(z.clone())
        return real(z, cond, uncond, step_hook, **resampling)

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
    check = lv.make_base(root / "base", vae_steps=2, device="cpu", unet=TINY_EXAMPLE_UNET, text=TINY_TEXT,
                         check_clips=2)  # fmt: skip
    assert check["clips"] == 2 and json.loads((root / "base" / "autoencoder_check.json").read_text()) == check
    return root


def test_report_writes_what_it_measured(tiny_run, tmp_path):
    prompts = ["a red square moving right", "a red circle moving left"]  # the second is held out
    out = tmp_path / "report"
    res = lv.report(tiny_run / "base", out, seeds=2, prompts=prompts, steps=2, videos_per_prompt=1, size=32)
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
        kept = [k for k in again if k not in lv.PER_FRAME]
        assert {k: again[k] for k in kept} == {k: row[k] for k in kept}
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


def test_a_base_can_reuse_an_earlier_fitted_vae(tiny_run, tmp_path, capsys):
    """``base --vae-from``: the earlier VAE as it was (weights and scaling), so latents made with it stay valid; a
    folder that is not a VAE is refused with a message naming it."""
    from training.latent_cache import vae_fingerprint
    from training.model.vae import TemporalVAE

    again = tmp_path / "base"
    lv.make_base(again, vae_steps=0, device="cpu", unet=TINY_EXAMPLE_UNET, text=TINY_TEXT, check_clips=1,
                 vae_from=tiny_run / "base" / "vae")  # fmt: skip
    old, new = (TemporalVAE.from_pretrained(str(p / "vae")) for p in (tiny_run / "base", again))
    assert new.config.scaling_factor == old.config.scaling_factor
    assert vae_fingerprint(new) == vae_fingerprint(old)
    assert lv.main(["base", "--out", str(tmp_path / "b2"), "--vae-from", str(tmp_path)]) == 2
    assert "not a VAE folder" in capsys.readouterr().err
