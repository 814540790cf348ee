"""BLIP-2 from LAVIS: ``vidrd convert blip2-lavis`` checked against LAVIS itself, which runs in its
own environment (``vidrd env lavis``; CI makes it). LAVIS fetches ViT-g weights and a BERT tokenizer on init:
``curation/models/lavis_side.py tiny`` builds a random tiny BLIP-2 OPT with local stand-ins (its docstring says
how), so nothing is downloaded."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
import torch

from curation.model_stage import ModelUnavailableError
from curation.models import lavis_env
from curation.models.blip2_convert import NotBlip2Checkpoint, convert, load_lavis_state


def lavis_python():
    """The LAVIS interpreter; without one these tests skip, unless VIDRD_REQUIRE_LAVIS is set (CI sets it, so a
    LAVIS environment that failed to build fails CI instead of skipping its tests)."""
    try:
        return lavis_env.python()
    except lavis_env.LavisEnvError as e:
        if os.environ.get("VIDRD_REQUIRE_LAVIS"):
            pytest.fail(f"VIDRD_REQUIRE_LAVIS is set but {e}")
        pytest.skip(str(e))


@pytest.fixture(scope="module")
def lavis_model(tmp_path_factory):
    lavis_python()
    d = tmp_path_factory.mktemp("lavis")
    lavis_env.run_side("tiny", "--out", str(d / "model"))
    image = d / "image.npy"
    np.save(image, np.random.default_rng(0).standard_normal((2, 3, 28, 28)).astype(np.float32))
    lavis_env.run_side("reference", "--model", str(d / "model"), "--image", str(image), "--out", str(d / "ref.npz"))
    return d


def test_converted_blip2_equals_lavis(lavis_model, tmp_path):
    from transformers import Blip2ForConditionalGeneration

    d = lavis_model
    dims = json.loads((d / "model" / "dims.json").read_text())
    out = tmp_path / "hf"
    cmd = [sys.executable, "-m", "vidrd.cli", "convert", "blip2-lavis", str(d / "model" / "model.pth"), "--opt",
           str(d / "model" / "opt"), "--vision-heads", str(dims["vision_heads"]), "--qformer-heads",
           str(dims["qformer_heads"]), "--out", str(out)]  # fmt: skip
    done = subprocess.run(cmd, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    ref = np.load(d / "ref.npz")
    m = Blip2ForConditionalGeneration.from_pretrained(out, dtype=torch.float32).eval()
    x = torch.from_numpy(np.load(d / "image.npy"))
    with torch.no_grad():
        emb = m.vision_model(pixel_values=x).last_hidden_state
        ones = torch.ones(emb.shape[:-1], dtype=torch.long)
        query = m.qformer(query_embeds=m.query_tokens.expand(len(x), -1, -1), encoder_hidden_states=emb,
                          encoder_attention_mask=ones).last_hidden_state  # fmt: skip
        ids = torch.tensor([[m.config.image_token_index] * m.config.num_query_tokens + list(ref["prompt_ids"][0])]
                           * len(x))  # fmt: skip
        logits = m(pixel_values=x, input_ids=ids, attention_mask=torch.ones_like(ids)).logits[:, -1]
        gen = m.generate(pixel_values=x, input_ids=ids, attention_mask=torch.ones_like(ids), do_sample=False,
                         num_beams=1, max_new_tokens=ref["generated"].shape[1], min_length=1)  # fmt: skip
    np.testing.assert_allclose(emb.numpy(), ref["image_embeds"], atol=1e-4)
    np.testing.assert_allclose(query.numpy(), ref["query_output"], atol=1e-4)
    np.testing.assert_allclose(logits[:, : ref["first_logits"].shape[1]].numpy(), ref["first_logits"], atol=1e-4)
    new = gen[:, ids.shape[1] :] if gen.shape[1] > ids.shape[1] else gen
    assert new.tolist() == ref["generated"].tolist()  # greedy captions: the same tokens
    assert len(set(ref["generated"][0].tolist())) > 1  # a caption of several different tokens, not one repeated


def test_not_a_blip2_checkpoint_is_named(tmp_path):
    bad = tmp_path / "bad.pth"
    torch.save({"model": {"query_tokens": torch.zeros(1, 2, 4), "opt_proj.weight": torch.zeros(2, 2)}}, bad)
    with pytest.raises(NotBlip2Checkpoint, match=r"no 'ln_vision\.weight'"):
        load_lavis_state(str(bad))
    with pytest.raises(NotBlip2Checkpoint):
        convert(str(bad), str(tmp_path), str(tmp_path / "out"))
    junk = tmp_path / "junk.pth"
    junk.write_bytes(b"not a torch file")
    with pytest.raises(NotBlip2Checkpoint, match="not readable as a weights-only torch checkpoint"):
        load_lavis_state(str(junk))
    # A checkpoint without its ViT and a --vit that is not EVA ViT-g weights: named, for each way it is not.
    from curation.models.blip2_convert import REQUIRED

    no_vit = tmp_path / "no_vit.pth"
    torch.save({"model": {k: torch.zeros(1) for k in REQUIRED}}, no_vit)
    empty = tmp_path / "empty.pth"
    empty.write_bytes(b"")
    other = tmp_path / "other.pth"
    torch.save({"model": {"encoder.weight": torch.zeros(2)}}, other)
    odd = tmp_path / "odd.pth"
    torch.save({"cls_token": [0.0], "pos_embed": 1, "patch_embed.proj.weight": 2, "blocks.0.mlp.fc1.weight": 3}, odd)
    cases = ((junk, "not readable"), (empty, "not readable"), (other, "not EVA ViT-g weights .*no 'cls_token'"),
             (odd, "not EVA ViT-g weights .*'cls_token' is not a named tensor"))  # fmt: skip
    for vit, match in cases:
        with pytest.raises(NotBlip2Checkpoint, match=match):
            convert(str(no_vit), str(tmp_path), str(tmp_path / "out"), str(vit))


def test_a_missing_or_broken_lavis_environment_says_how_to_make_it(tmp_path, monkeypatch):
    monkeypatch.setenv(lavis_env.PYTHON_ENV, str(tmp_path / "none" / "python"))
    with pytest.raises(lavis_env.LavisEnvError, match="make it with `vidrd env lavis`"):
        lavis_env.python()
    fake = tmp_path / "python"
    fake.write_text(f"#!/bin/sh\nexec {sys.executable} -c 'import lavis_is_not_here' \"$@\"\n")
    os.chmod(fake, 0o755)
    monkeypatch.setenv(lavis_env.PYTHON_ENV, str(fake))
    with pytest.raises(lavis_env.LavisEnvError, match=r"broken .*vidrd env lavis --force"):
        lavis_env.python()


def test_force_remakes_only_an_environment_the_command_made(tmp_path, capsys):
    """`vidrd env lavis --path DIR --force` once deleted DIR whatever it held."""
    import subprocess

    from vidrd.cli import main

    theirs = tmp_path / "theirs"
    (theirs / "bin").mkdir(parents=True)
    (theirs / "bin" / "python").write_text("someone's file")
    (theirs / "notes.txt").write_text("keep me")
    assert main(["env", "lavis", "--path", str(theirs), "--force"]) == 2
    assert "did not make" in capsys.readouterr().err
    with pytest.raises(lavis_env.LavisEnvError, match="did not make"):
        lavis_env.create(theirs, force=True)
    assert (theirs / "notes.txt").read_text() == "keep me" and (theirs / "bin" / "python").exists()
    link = tmp_path / "link"
    link.symlink_to(theirs)
    with pytest.raises(lavis_env.LavisEnvError, match="symbolic link"):
        lavis_env.create(link, force=True)
    # A folder this command made is removed and remade (the remake fails here on purpose: no real interpreter).
    ours = tmp_path / "ours"
    ours.mkdir()
    (ours / lavis_env.MARKER).write_text("")
    (ours / "old").write_text("from the last make")
    with pytest.raises(subprocess.CalledProcessError):
        lavis_env.create(ours, force=True, base_python="false")
    assert not (ours / "old").exists() and (ours / lavis_env.MARKER).is_file()


def test_short_videos_through_lavis_on_ray_and_a_server_that_dies(lavis_model, tmp_path, monkeypatch):
    """``stage.blip2: lavis:...`` on Ray: every labelled clip captioned by LAVIS with the same accounting as the
    transformers backend; then a LAVIS server that dies after one batch: those rows are ``model_failed`` rejects,
    the next batch gets a new server, and the counts still add up."""
    import ray

    from curation.models.lavis_blip2 import LavisBlip2
    from curation.runner import RunnerConfig, run_stage
    from tests.curation_inputs import video_corpus, write_manifest

    spec = f"tiny:{lavis_model / 'model'}"
    server = LavisBlip2(spec, batch_size=2)
    frames = [np.random.default_rng(i).integers(0, 255, (32, 40, 3), dtype=np.uint8) for i in range(3)]
    first = server.caption(frames, ["a photo of", "a video of", "a photo of"])
    assert len(first) == 3 and all(isinstance(c, str) for c in first)
    assert server.caption(frames, ["a photo of", "a video of", "a photo of"]) == first  # greedy: deterministic
    server.close()

    rows = [r for r in video_corpus(tmp_path / "in") if r["expect"] in ("ok", "no_caption", "too_long")]
    for k, r in enumerate(rows):
        r.pop("expect")
        r["source"], r["label"], r["id"] = "kinetics", "playing_guitar", f"clip{k}"
    manifest = write_manifest(tmp_path / "m.parquet", rows)
    cfg = dict(short_side=32, device="cpu", blip2=f"lavis:{spec}", batch_size=4)
    runner = RunnerConfig(rows_per_partition=2, partitions_per_model_call=1, model_actors=1)
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        s = run_stage("short-videos", str(manifest), str(tmp_path / "out"), cfg, runner, progress=False)
        assert s.ok and s.inputs == len(rows) and s.samples == len(rows) and not s.reasons
        meta = [json.loads(m) for m in _json_members(tmp_path / "out")]
        assert len(meta) == len(rows) and {m["caption_model"] for m in meta} == {"lavis:tiny-random"}
        ray.shutdown()
        monkeypatch.setenv("VIDRD_LAVIS_DIE_AFTER", "1")  # each server answers one batch, then dies
        ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
        d = run_stage("short-videos", str(manifest), str(tmp_path / "dies"), cfg, runner, progress=False)
        assert d.ok and d.inputs == len(rows) == d.samples + sum(d.reasons.values())  # nothing lost
        assert d.reasons.get("model_failed", 0) >= 1 and d.samples >= 1
        # A server that cannot start (its weights not there yet): the run stops with that error and writes no
        # reject; the same command, once the weights are there, captions every row.
        ray.shutdown()
        monkeypatch.delenv("VIDRD_LAVIS_DIE_AFTER")
        ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
        late = tmp_path / "late"
        cfg_late = dict(cfg, blip2=f"lavis:tiny:{late / 'model'}")
        with pytest.raises(ModelUnavailableError, match="did not start"):
            run_stage("short-videos", str(manifest), str(tmp_path / "late-out"), cfg_late, runner, progress=False)
        assert not list((tmp_path / "late-out").glob("*.tar")) and not list((tmp_path / "late-out").glob("_parts/*"))
        shutil.copytree(lavis_model / "model", late / "model", dirs_exist_ok=True)  # the server made hf/ there
        again = run_stage("short-videos", str(manifest), str(tmp_path / "late-out"), cfg_late, runner, progress=False)
        assert again.ok and again.samples == len(rows) and not again.reasons and again.skipped == 0
    finally:
        ray.shutdown()


def _json_members(folder) -> list[bytes]:
    import tarfile

    out = []
    for tar in sorted(folder.glob("*.tar")):
        with tarfile.open(tar) as t:
            out += [t.extractfile(m).read() for m in t.getmembers() if m.name.endswith(".json")]
    return out


def test_vision_side_for_minigpt4_equals_lavis(lavis_model, tmp_path):
    """``--vision-only``: the ViT + Q-Former MiniGPT-4 reads of a BLIP-2, from a LAVIS checkpoint whose language side
    is left out (as for the FlanT5-XXL one MiniGPT-4 was built on), equal to LAVIS's."""
    from curation.models.minigpt4 import MiniGPT4
    from curation.models.tiny import tiny_minigpt4
    from vidrd.cli import main

    d = lavis_model
    dims = json.loads((d / "model" / "dims.json").read_text())
    flant5_like = tmp_path / "flant5.pth"  # the same vision side, its language side under other names
    state = torch.load(d / "model" / "model.pth", map_location="cpu")["model"]
    torch.save({"model": {k.replace("opt_", "t5_"): v for k, v in state.items()}}, flant5_like)
    out = tmp_path / "vision"
    args = ["convert", "blip2-lavis", str(flant5_like), "--vision-only", "--vision-heads", str(dims["vision_heads"]),
            "--qformer-heads", str(dims["qformer_heads"]), "--out", str(out)]  # fmt: skip
    assert main(args) == 0
    assert main(["convert", "blip2-lavis", str(flant5_like), "--out", str(tmp_path / "x")]) == 2  # needs --opt
    parts = tiny_minigpt4(tmp_path / "mg")  # its LLaMA and projection (Q-Former width 32, as this BLIP-2's)
    m = MiniGPT4.from_pretrained(str(out), str(parts["llm"]), str(parts["checkpoint"]), device="cpu",
                                 dtype=torch.float32)  # fmt: skip
    ref = np.load(d / "ref.npz")
    x = torch.from_numpy(np.load(d / "image.npy"))
    with torch.no_grad():
        v = m.vision(pixel_values=x).last_hidden_state
        q = m.qformer(query_embeds=m.query_tokens.expand(len(x), -1, -1), encoder_hidden_states=v,
                      encoder_attention_mask=torch.ones(v.shape[:-1], dtype=torch.long)).last_hidden_state  # fmt: skip
    np.testing.assert_allclose(v.numpy(), ref["image_embeds"], atol=1e-4)
    np.testing.assert_allclose(q.numpy(), ref["query_output"], atol=1e-4)
