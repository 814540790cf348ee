"""The model stages: short-videos (BLIP-2) and long-videos (CLIP + MiniGPT-4), their models at tiny
size, segmentation, and the Ray pipeline shape (CPU prepare -> model actor -> CPU write)."""

from __future__ import annotations

import json
import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from curation.captioning import FALLBACK, MINIGPT4_TEMPLATES
from curation.models.clip import ClipScorer
from curation.models.minigpt4 import MiniGPT4
from curation.models.preprocess import OPENAI_MEAN, OPENAI_STD
from curation.models.tiny import tiny_blip2, tiny_clip, tiny_minigpt4
from curation.segments import kept_runs, segments
from curation.stage import Rejected
from curation.stages.long_videos import LongVideosConfig, LongVideosStage
from curation.stages.short_videos import ShortVideosConfig, ShortVideosStage
from manifests.schema import RejectReason
from media.video import decode_frames, decode_sampled
from tests.curation_inputs import outcome, video_corpus, write_manifest
from vidrd.synthetic import moving_square, write_video

SHORT = dict(short_side=32, device="cpu", blip2="tiny")
TINY_LONG = dict(clip="tiny", minigpt4_blip2="tiny", minigpt4_llm="tiny", minigpt4_checkpoint="tiny")


@pytest.fixture(scope="module")
def labelled(tmp_path_factory):
    """The shared bad-input corpus with class labels (one row without a label)."""
    rows = video_corpus(tmp_path_factory.mktemp("labelled"))
    for r in rows:
        r["source"], r["label"] = "kinetics", "playing_guitar"
        r["expect"] = {"no_caption": "ok", "too_long": "ok"}.get(r["expect"], r["expect"])
    rows[0]["label"], rows[0]["expect"] = None, "no_label"
    return rows


@pytest.fixture(scope="module")
def long_video(tmp_path_factory) -> Path:
    """20 s at 8 fps: red 0-6 s, blue 6-9 s, red 9-20 s (the colour is what the stub models judge)."""
    d = tmp_path_factory.mktemp("long")
    parts = [("red", 48), ("blue", 24), ("red", 88)]
    frames = np.concatenate(
        [moving_square(c, "right", n, width=64, height=48, seed=i) for i, (c, n) in enumerate(parts)]
    )
    write_video(d / "long.mp4", frames, fps=8)
    return d / "long.mp4"


def redness(img: np.ndarray) -> float:
    """Share of strongly red pixels (the squares of moving_square are solid colours)."""
    r, g, b = (img[..., i].astype(int) for i in range(3))
    return float(((r > 150) & (g < 100) & (b < 100)).mean())


class RedClip:
    """Stand-in CLIP for the decision logic: the score is the share of red pixels."""

    name = "red-clip"

    def score(self, images, texts):
        return np.array([redness(i) for i in images], dtype=np.float32)


class RedMiniGPT4:
    """Stand-in MiniGPT-4: says yes to frames with red in them; records what it was asked."""

    name = "red-minigpt4"

    def __init__(self):
        self.asked, self.prompts = 0, []

    def p_yes(self, images, questions):
        self.asked += len(images)
        return np.array([1.0 if redness(i) > 0.005 else 0.0 for i in images], dtype=np.float32)

    def ask(self, images, prompts):
        self.prompts += list(prompts)
        return ["a red square slides across a textured wall"] * len(images)


# -- short-videos -----------------------------------------------------------------------------------


def test_short_videos_every_input_is_kept_or_rejected_for_its_reason(labelled):
    stage = ShortVideosStage(ShortVideosConfig(**SHORT))
    for r in labelled:
        got, res = outcome(stage, r)
        assert got == r["expect"], (r["id"], got, res)
        if got == "ok":
            (s,) = res
            m = s.meta
            assert 0 <= m["frame_index"] < m["frames"] and m["template_id"] in range(4)
            assert "playing guitar" in m["prompt"] and m["caption_model"] == "tiny-random"
            assert s.caption == m["captions"][0] and isinstance(m["raw_answer"], str)
            assert decode_frames(s.mp4)[1].frames == m["frames"]


def test_short_videos_pick_frame_and_template_by_seed(labelled):
    ok = [r for r in labelled if r["expect"] == "ok"]
    a, b = ShortVideosStage(ShortVideosConfig(**SHORT), seed=0), ShortVideosStage(ShortVideosConfig(**SHORT), seed=7)
    pa = [p for r in ok for p in a.prepare(r)]
    again = [p for r in ok for p in a.prepare(r)]
    other = [p for r in ok for p in b.prepare(r)]
    assert [(p.frame_index, p.template_id) for p in pa] == [(p.frame_index, p.template_id) for p in again]
    assert [(p.frame_index, p.template_id) for p in pa] != [(p.frame_index, p.template_id) for p in other]
    assert len({p.template_id for p in pa}) > 1
    p = pa[0]  # the frame BLIP-2 sees is that frame of the shipped clip
    assert np.array_equal(p.frame, decode_frames(p.mp4, [p.frame_index])[0][0])


def test_short_videos_fallbacks_are_documented_and_counted(labelled):
    stage = ShortVideosStage(ShortVideosConfig(**SHORT))
    row = next(r for r in labelled if r["expect"] == "ok")
    prep = stage.prepare(row)
    for answer, reason in (("", "empty"), (prep[0].prompt, "repeats_prompt"), ("playing guitar", "only_label"),
                           ("a man plays a red guitar on a stage", None)):  # fmt: skip
        (s,) = stage.finish(row, prep, [{"answer": answer, "model": "m"}])
        assert s.meta["caption_fallback"] == reason and s.meta["raw_answer"] == answer
        if reason:
            assert s.caption == FALLBACK.format(label="playing guitar")
            assert s.events == (f"caption_fallback:{reason}",)
        else:
            assert s.caption == "a man plays a red guitar on a stage" and s.events == ()


def test_short_videos_with_the_t5_variant(labelled, tmp_path):
    stage = ShortVideosStage(ShortVideosConfig(**{**SHORT, "blip2": str(tiny_blip2(tmp_path / "t5", "t5"))}))
    row = next(r for r in labelled if r["expect"] == "ok")
    (s,) = stage.process(row)
    assert s.meta["caption_model"] == "t5" and s.meta["raw_answer"]


def test_rejected_survives_pickling():  # it crosses Ray's process boundaries
    r = pickle.loads(pickle.dumps(Rejected(RejectReason.NO_LABEL, "no label")))
    assert r.reason is RejectReason.NO_LABEL and r.message == "no label"


# -- models -----------------------------------------------------------------------------------------


def _images(n: int) -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    return [rng.integers(0, 255, (40 + 3 * i, 60, 3), dtype=np.uint8) for i in range(n)]


def _smooth_images(n: int) -> list[np.ndarray]:
    """Gradients with a coloured box: resampling filters agree on these (on noise they do not)."""
    out = []
    for i in range(n):
        h, w = 40 + 8 * i, 64
        yy, xx = np.mgrid[0:h, 0:w]
        img = np.stack([xx * 255 // w, yy * 255 // h, np.full((h, w), 60 * i)], -1).astype(np.uint8)
        img[h // 4 : h // 2, w // 3 : w // 2] = (255, 40 * i, 0)
        out.append(img)
    return out


def test_clip_scores_match_the_models_own_preprocessing_and_do_not_depend_on_batching(tmp_path):
    from transformers import CLIPModel
    from transformers.models.clip.image_processing_pil_clip import CLIPImageProcessorPil

    folder = tiny_clip(tmp_path / "clip")
    scorer = ClipScorer.from_transformers(str(folder), device="cpu", dtype=torch.float32)
    images, texts = _smooth_images(5), ["a man", "a man", "playing", "a video", "a man"]
    whole = scorer.score(images, texts)
    scorer.batch_size = 2
    np.testing.assert_allclose(scorer.score(images, texts), whole, atol=1e-6)
    # the reference: transformers' PIL preprocessing (resize short side, centre crop) and CLIPModel itself
    proc = CLIPImageProcessorPil(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32})
    pix = proc(images=images, return_tensors="pt")["pixel_values"]
    ours = scorer.preprocess(images)
    assert ours.shape == pix.shape and (ours - pix).abs().mean() < 0.05  # PIL vs torch bicubic: a grey level
    model = CLIPModel.from_pretrained(folder).eval()
    with torch.no_grad():
        img = torch.nn.functional.normalize(model.get_image_features(pixel_values=pix).pooler_output, dim=-1)
    ref = (img * scorer.embed_texts(texts)).sum(-1).numpy()
    np.testing.assert_allclose(whole, ref, atol=0.02)
    with pytest.raises(ValueError, match="5 images but 1 texts"):
        scorer.score(images, texts[:1])


TINY_OPEN_CLIP = {
    "embed_dim": 16,
    "vision_cfg": {"image_size": 32, "layers": 1, "width": 32, "patch_size": 8, "head_width": 16},
    "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1},
}


@pytest.fixture(scope="module")
def open_clip_folder(tmp_path_factory):
    """A tiny random open_clip model in open_clip's own folder layout (``local-dir:``), and the model itself."""
    open_clip = pytest.importorskip("open_clip")  # needs torchvision that loads beside torch (README, "Install")
    folder = tmp_path_factory.mktemp("open_clip")
    cfg = {"model_cfg": TINY_OPEN_CLIP, "preprocess_cfg": {"mean": list(OPENAI_MEAN), "std": list(OPENAI_STD)}}
    (folder / "open_clip_config.json").write_text(json.dumps(cfg))
    torch.manual_seed(0)
    model = open_clip.model.CLIP(**TINY_OPEN_CLIP).eval()
    torch.save(model.state_dict(), folder / "open_clip_pytorch_model.bin")
    return folder, model


def test_clip_through_open_clip(tmp_path):
    open_clip = pytest.importorskip("open_clip")
    (tmp_path / "cfg").mkdir()
    (tmp_path / "cfg" / "vidrd-tiny-clip.json").write_text(json.dumps(TINY_OPEN_CLIP))
    open_clip.add_model_config(tmp_path / "cfg")
    torch.manual_seed(0)
    model, _, preprocess = open_clip.create_model_and_transforms("vidrd-tiny-clip")
    torch.save(model.state_dict(), tmp_path / "w.pt")
    scorer = ClipScorer.from_open_clip("vidrd-tiny-clip", str(tmp_path / "w.pt"), device="cpu", dtype=torch.float32)
    from PIL import Image

    images, texts = _smooth_images(3), ["a dog", "a cat", "a dog"]
    with torch.no_grad():
        img = model.encode_image(torch.stack([preprocess(Image.fromarray(i)) for i in images]))
        txt = model.encode_text(open_clip.get_tokenizer("vidrd-tiny-clip")(texts))
    ref = (torch.nn.functional.normalize(img, dim=-1) * torch.nn.functional.normalize(txt, dim=-1)).sum(-1)
    # Resized images: our tensor resampling and open_clip's PIL bicubic differ by a few grey levels.
    np.testing.assert_allclose(scorer.score(images, texts), ref.numpy(), atol=0.03)


def test_open_clip_scores_equal_open_clip_itself_and_do_not_depend_on_the_batch(open_clip_folder):
    open_clip = pytest.importorskip("open_clip")
    folder, model = open_clip_folder
    name = f"local-dir:{folder}"
    scorer = ClipScorer.from_open_clip(name, None, device="cpu", dtype=torch.float32)
    _, _, preprocess = open_clip.create_model_and_transforms(name)
    from PIL import Image

    rng = np.random.default_rng(1)  # at the model's own size no resampling happens: the pixels are the same
    images = [rng.integers(0, 255, (32, 32, 3), dtype=np.uint8) for _ in range(5)]
    texts = ["a dog", "a cat", "a guitar", "playing a guitar", "a dog"]
    with torch.no_grad():
        img = model.encode_image(torch.stack([preprocess(Image.fromarray(i)) for i in images]))
        txt = model.encode_text(open_clip.get_tokenizer(name)(texts))
    ref = (torch.nn.functional.normalize(img, dim=-1) * torch.nn.functional.normalize(txt, dim=-1)).sum(-1)
    batched = scorer.score(images, texts)
    np.testing.assert_allclose(batched, ref.numpy(), atol=1e-5)
    scorer.batch_size = 1
    np.testing.assert_allclose(scorer.score(images, texts), batched, atol=1e-6)
    scorer.batch_size = 2
    np.testing.assert_allclose(scorer.score(images, texts), batched, atol=1e-6)
    assert scorer.name == f"open_clip:{name}"
    with pytest.raises(FileNotFoundError, match=r"no open_clip_config\.json"):
        ClipScorer.from_open_clip(f"local-dir:{folder / 'nothing'}", None, device="cpu")


@pytest.fixture(scope="module")
def minigpt4_parts(tmp_path_factory):
    return tiny_minigpt4(tmp_path_factory.mktemp("minigpt4"))


def test_minigpt4_loads_the_published_pieces(minigpt4_parts, tmp_path):
    from transformers import Blip2ForConditionalGeneration

    p = {k: str(v) for k, v in minigpt4_parts.items()}
    m = MiniGPT4.from_pretrained(**p, device="cpu", dtype=torch.float32, max_new_tokens=4)
    blip2 = Blip2ForConditionalGeneration.from_pretrained(p["blip2"]).eval()
    proj = torch.load(p["checkpoint"], weights_only=True)["model"]
    images = _images(3)
    with torch.no_grad():  # vision + Q-Former + projection equal BLIP-2's own modules and the checkpoint's Linear
        from curation.models.preprocess import OPENAI_MEAN, OPENAI_STD, images_to_batch

        x = images_to_batch(images, 32, OPENAI_MEAN, OPENAI_STD, torch.device("cpu"), torch.float32, crop=False)
        v = blip2.vision_model(pixel_values=x).last_hidden_state
        q = blip2.qformer(query_embeds=blip2.query_tokens.expand(3, -1, -1), encoder_hidden_states=v).last_hidden_state
        ref = q @ proj["llama_proj.weight"].T + proj["llama_proj.bias"]
        torch.testing.assert_close(m.image_embeds(images), ref)
    questions = ["describe the video of a man", "what is it", "a b c"]
    whole, p_yes = m.ask(images, questions), m.p_yes(images, questions)
    m.batch_size = 1  # left padding: batched answers equal one-at-a-time answers
    assert m.ask(images, questions) == whole
    np.testing.assert_allclose(m.p_yes(images, questions), p_yes, atol=1e-5)
    assert all(0.0 < x < 1.0 for x in p_yes)
    torch.save({"model": {"other.weight": torch.zeros(1)}}, tmp_path / "bad.pth")
    with pytest.raises(ValueError, match="llama_proj"):
        MiniGPT4.from_pretrained(p["blip2"], p["llm"], str(tmp_path / "bad.pth"), device="cpu", dtype=torch.float32)
    with pytest.raises(FileNotFoundError, match=r"MiniGPT-4 \.pth"):
        MiniGPT4.from_pretrained(p["blip2"], p["llm"], str(tmp_path / "none.pth"), device="cpu")


# -- long-videos ------------------------------------------------------------------------------------


def test_segments_from_decisions():
    assert kept_runs([1, 1, 0, 1, 0, 0, 1]) == [(0, 1), (3, 3), (6, 6)]
    t = [float(i) for i in range(10)]
    got = segments(t, [1, 1, 1, 0, 1, 0, 1, 1, 1, 1], 10.0, min_seconds=2, max_seconds=4)
    assert [(s["start"], s["end"]) for s in got] == [(0.0, 3.0), (6.0, 10.0)]  # the 1 s run at 4 s is dropped
    got = segments(t, [1] * 10, 9.5, min_seconds=2, max_seconds=4)
    assert len(got) == 3 and got[-1]["end"] == 9.5 and all(s["end"] - s["start"] <= 4 for s in got)
    assert [(s["first"], s["last"]) for s in got] == [(0, 3), (4, 6), (7, 9)]
    with pytest.raises(ValueError):
        segments(t, [1] * 9, 10.0, 2, 4)


def test_decode_sampled_one_frame_per_interval(long_video):
    frames, times, info = decode_sampled(str(long_video), 1.0, 24)
    assert info.frames == 160 and len(frames) == 20 and min(frames.shape[1:3]) == 24
    np.testing.assert_allclose(times, np.arange(20.0))
    frames, times, _ = decode_sampled(str(long_video), 1.0, 24, max_samples=5)  # widened to fit
    assert len(frames) == 5 and times[1] == pytest.approx(4.0)
    assert times[-1] == pytest.approx(16.0)  # still spread over the whole video, not cut at the 5th second


def test_long_videos_keep_relevant_runs_and_record_the_timeline(long_video):
    cfg = LongVideosConfig(**TINY_LONG, device="cpu", clip_threshold=0.005, min_segment_seconds=2,
                           max_segment_seconds=6, short_side=32, min_frames=8)  # fmt: skip
    stage = LongVideosStage(cfg)
    mg = RedMiniGPT4()
    stage._models = (RedClip(), mg)
    row = {"id": "v/1", "uri": str(long_video), "source": "videolt", "label": "Playing_Guitar", "kind": "video"}
    samples = stage.process(row)
    spans = [(s.meta["start"], s.meta["end"]) for s in samples]
    assert spans == [(0.0, 6.0), (9.0, 14.5), (14.5, 20.0)]  # red runs; the 11 s one cut into two pieces
    assert mg.asked == 17  # only frames CLIP passed were put to MiniGPT-4
    tl = samples[0].meta["timeline"]
    assert tl["keep"] == [True] * 6 + [False] * 3 + [True] * 11
    assert tl["p_yes"][6:9] == [None] * 3 and tl["clip_score"][7] == 0.0
    for s in samples:
        assert s.caption == "a red square slides across a textured wall" and s.meta["caption_fallback"] is None
        assert s.meta["prompt"] in [t.format(label="playing guitar") for t in MINIGPT4_TEMPLATES]
        frames, info = decode_frames(s.mp4)
        assert info.frames == round((s.meta["end"] - s.meta["start"]) * 8) and redness(frames[len(frames) // 2]) > 0
        assert s.meta["cuts"] == [] and s.meta["motion"] > 0  # no segment spans the video's cuts (6 s and 9 s)
    assert len({s.key for s in samples}) == 3 and samples[0].key.startswith("videolt-v_1")


def test_long_videos_split_keep_or_drop_a_segment_across_cuts(long_video):
    class Everything(RedMiniGPT4):  # every frame relevant: one segment over the whole video and its two cuts
        def p_yes(self, images, questions):
            return np.ones(len(images), np.float32)

    clip = type("AllClip", (), {"name": "all", "score": lambda self, images, texts: np.ones(len(images))})()
    row = {"id": "v", "uri": str(long_video), "source": "videolt", "label": "guitar", "kind": "video"}

    def stage(cuts: str) -> LongVideosStage:
        st = LongVideosStage(LongVideosConfig(**TINY_LONG, device="cpu", min_segment_seconds=2, max_segment_seconds=20,
                                              short_side=32, min_frames=8, cuts=cuts))  # fmt: skip
        st._models = (clip, Everything())
        return st

    (kept,) = stage("keep").process(row)
    assert kept.key == "videolt-v-s0000" and kept.meta["cuts"] == [48, 72] and kept.meta["frames"] == 160
    assert outcome(stage("drop"), row)[0] == "has_cut"
    pieces = stage("split").process(row)
    assert [s.key for s in pieces] == ["videolt-v-s0000-p000", "videolt-v-s0000-p001", "videolt-v-s0000-p002"]
    assert [(s.meta["start"], s.meta["end"], s.meta["frames"]) for s in pieces] == [
        (0.0, 6.0, 48), (6.0, 9.0, 24), (9.0, 20.0, 88)]  # fmt: skip
    # the caption was said of the frame at 9 s: the third shot's
    assert [s.meta["caption_in_shot"] for s in pieces] == [False, False, True]
    assert all(s.meta["cuts"] == [] and s.caption == kept.caption for s in pieces)
    assert redness(decode_frames(pieces[1].mp4)[0][5]) == 0.0 and redness(decode_frames(pieces[2].mp4)[0][5]) > 0


def test_long_videos_reject_reasons(long_video, tmp_path):
    stage = LongVideosStage(LongVideosConfig(**TINY_LONG, device="cpu", clip_threshold=0.9, short_side=32))
    stage._models = (RedClip(), RedMiniGPT4())
    row = {"id": "v", "uri": str(long_video), "source": "videolt", "label": "guitar", "kind": "video"}
    got, msg = outcome(stage, row)
    assert got == "no_segment" and "0 of 20 sampled frames kept" in msg
    assert outcome(stage, {**row, "label": None})[0] == "no_label"
    write_video(tmp_path / "short.mp4", moving_square("red", "up", 8), fps=8)
    assert outcome(stage, {**row, "uri": str(tmp_path / "short.mp4")})[0] == "too_short"
    (tmp_path / "bad.mp4").write_bytes(long_video.read_bytes()[:3000])
    assert outcome(stage, {**row, "uri": str(tmp_path / "bad.mp4")})[0] == "undecodable"
    with pytest.raises(ValueError, match="max_segment_seconds"):
        LongVideosConfig(**TINY_LONG, min_segment_seconds=5, max_segment_seconds=6)


# -- on Ray, with the tiny random models ------------------------------------------------------------


@pytest.fixture(scope="module")
def ray_local():
    ray = pytest.importorskip("ray")
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()


def test_short_videos_on_ray_loses_nothing_and_resumes(ray_local, labelled, tmp_path):
    from curation.runner import RunnerConfig, run_stage

    m = write_manifest(tmp_path / "m.parquet", [{k: v for k, v in r.items() if k != "expect"} for r in labelled])
    runner = RunnerConfig(rows_per_partition=5, partitions_per_model_call=2)
    s = run_stage("short-videos", str(m), str(tmp_path / "out"), SHORT, runner, progress=False)
    want_ok = sum(r["expect"] == "ok" for r in labelled)
    assert s.ok and s.inputs == len(labelled) and s.samples == want_ok and s.produced == want_ok
    assert s.reasons["no_label"] == 1 and sum(s.events.values()) <= want_ok
    again = run_stage("short-videos", str(m), str(tmp_path / "out"), SHORT, runner, progress=False)
    assert again.skipped == again.partitions == 4 and again.samples == s.samples
    verify = subprocess.run([sys.executable, "-m", "vidrd.cli", "shards", "verify", str(tmp_path / "out")],
                            capture_output=True, text=True)  # fmt: skip
    assert verify.returncode == 0, verify.stdout + verify.stderr


def test_long_videos_on_ray_with_the_open_clip_backend(ray_local, long_video, open_clip_folder, tmp_path):
    from curation.runner import RunnerConfig, run_stage
    from tests.curation_inputs import row

    folder, _ = open_clip_folder
    rows = [row("a", str(long_video), source="videolt", label="guitar"),
            row("b", str(tmp_path / "missing.mp4"), source="videolt", label="guitar")]  # fmt: skip
    m = write_manifest(tmp_path / "m.parquet", rows)
    cfg = {**TINY_LONG, "clip": f"open_clip:local-dir:{folder}", "device": "cpu", "clip_threshold": -1.0,
           "relevance_threshold": 0.0, "min_segment_seconds": 2, "max_segment_seconds": 8, "short_side": 32,
           "min_frames": 8}  # fmt: skip
    s = run_stage("long-videos", str(m), str(tmp_path / "out"), cfg, RunnerConfig(rows_per_partition=2), False)
    assert s.ok and s.inputs == 2 and s.produced == 1 and s.samples >= 1 and s.reasons == {"missing_file": 1}
    import pyarrow.parquet as pq

    index = pq.read_table(tmp_path / "out" / "_index.parquet").to_pylist()
    import tarfile

    with tarfile.open(tmp_path / "out" / index[0]["shard"]) as t:
        meta = json.loads(t.extractfile(f"{index[0]['key']}.json").read())
    assert meta["clip_model"] == f"open_clip:local-dir:{folder}"  # the backend is recorded with the sample


def test_long_videos_on_ray_with_tiny_models_and_the_timeline_picture(ray_local, long_video, tmp_path):
    from curation.runner import RunnerConfig, run_stage
    from tests.curation_inputs import row

    rows = [row("a", str(long_video), source="videolt", label="guitar"),
            row("b", str(long_video), source="videolt", label=None),
            row("c", str(tmp_path / "missing.mp4"), source="videolt", label="guitar")]  # fmt: skip
    m = write_manifest(tmp_path / "m.parquet", rows)
    cfg = {**TINY_LONG, "device": "cpu", "clip_threshold": -1.0, "relevance_threshold": 0.0,
           "min_segment_seconds": 2, "max_segment_seconds": 8, "short_side": 32, "min_frames": 8}  # fmt: skip
    s = run_stage("long-videos", str(m), str(tmp_path / "out"), cfg, RunnerConfig(rows_per_partition=2), False)
    assert s.ok and s.produced == 1 and s.samples == 3 and s.reasons == {"no_label": 1, "missing_file": 1}
    show = subprocess.run(
        [sys.executable, "-m", "vidrd.cli", "shards", "show", str(tmp_path / "out"), "videolt-a-s0001",
         "--out", str(tmp_path / "seg.png")], capture_output=True, text=True,
    )  # fmt: skip
    assert show.returncode == 0, show.stderr
    assert "timeline: 20 of 20 sampled frames kept, 3 segments" in show.stdout
    from PIL import Image

    img = np.asarray(Image.open(tmp_path / "seg.png").convert("RGB"))
    assert ((img == (46, 160, 67)).all(-1)).sum() > 1000  # the kept bars are drawn


def test_a_failing_model_call_rejects_its_rows_as_model_failed(labelled, tmp_path, monkeypatch):
    from curation.model_pipeline import InferActor, prepare_partition, write_model_partition
    from curation.partition import Partition, StageSpec

    rows = [{k: v for k, v in r.items() if k != "expect"} for r in labelled[:6]]
    spec = StageSpec.of("short-videos", SHORT, 0)
    item = {"partition": Partition(0, "p0", "kinetics", str(tmp_path / "o"), rows, spec)}
    (tmp_path / "o").mkdir()  # run_stage makes it before any task runs
    prepared = prepare_partition(item)
    actor = InferActor(spec)

    def broken(models, items):
        raise RuntimeError("CUDA error: an illegal memory access was encountered")

    monkeypatch.setattr(actor.stage, "infer", broken)  # the stage is cached per process: restored after
    batch = {k: np.array([v], dtype=object) for k, v in prepared.items()}
    out = actor(batch)
    written = write_model_partition({k: v[0] for k, v in out.items()})
    expected_ok = sum(r["expect"] == "ok" for r in labelled[:6])
    assert written["samples"] == 0 and written["rejects"] == 6
    import pyarrow.parquet as pq

    rej = pq.read_table(tmp_path / "o" / "_parts" / "p0.rejects.parquet").to_pylist()
    failed = [r for r in rej if r["reason"] == "model_failed"]
    assert len(failed) == expected_ok and "illegal memory access" in failed[0]["message"]
