"""Loading SD 2.1 weights (diffusers folder, original single file), VidRD folders, Lightning checkpoints."""

import pytest
import torch

from tests.tiny_sd import tiny_original_config as tiny_cfg
from tests.tiny_sd import write_sd_folder, write_single_file
from training.model.loading import (
    EPSILON,
    V_PREDICTION,
    WeightLoadError,
    infer_prediction_type,
    load_into,
    load_lightning_checkpoint,
    load_sd_folder,
    load_sd_single_file,
    load_vidrd,
    save_vidrd,
)


@pytest.fixture(scope="module")
def sd_folder(tmp_path_factory):
    return write_sd_folder(tmp_path_factory.mktemp("sd21"))


def test_diffusers_folder_loads_with_only_temporal_keys_new(sd_folder):
    c = load_sd_folder(str(sd_folder))
    unet, vae = c.reports
    assert unet.missing == [] and unet.unexpected == [] and unet.loaded > 100
    assert unet.temporal_initialised and all(".temp_" in k for k in unet.temporal_initialised)
    assert vae.missing == [] and all(".temp_convs." in k for k in vae.temporal_initialised)
    assert c.prediction_type == V_PREDICTION
    emb = c.text_encoder(["a red square moving right"])
    assert emb.shape == (1, 77, 32)
    assert torch.equal(c.text_encoder.empty(3)[1], c.text_encoder([""])[0])


@pytest.mark.parametrize("suffix", [".safetensors", ".ckpt"])
def test_single_file_loads_same_weights(tmp_path, suffix):
    path = tmp_path / f"v2-1_768-ema-pruned{suffix}"
    originals = write_single_file(path)
    c = load_sd_single_file(str(path), original_config=tiny_cfg(), image_size=64)
    for rep in c.reports:
        assert rep.missing == [] and rep.unexpected == [], rep.line()
        assert rep.temporal_initialised
    sd = c.unet.state_dict()
    assert all(torch.equal(sd[k], v) for k, v in originals["unet"].items())
    vsd = c.vae.vae.state_dict()
    assert all(torch.equal(vsd[k], v) for k, v in originals["vae"].items())
    assert c.prediction_type == V_PREDICTION and c.scheduler_config["prediction_type"] == V_PREDICTION


def test_prediction_type_follows_the_checkpoint(tmp_path):
    base = tmp_path / "model.ckpt"
    write_single_file(base, global_step=875000)
    c = load_sd_single_file(str(base), original_config=tiny_cfg("eps"), image_size=64)
    assert c.prediction_type == EPSILON
    assert infer_prediction_type(str(base), {"global_step": 875000}, None) == EPSILON
    assert infer_prediction_type("v2-1_512-base-ema.safetensors", {}, None) == EPSILON
    assert infer_prediction_type("v2-1_768-ema-pruned.safetensors", {}, None) == V_PREDICTION
    assert infer_prediction_type("x.ckpt", {}, tiny_cfg("v")) == V_PREDICTION


def test_wrong_weights_are_a_clear_error(sd_folder):
    c = load_sd_folder(str(sd_folder), text_encoder=False)
    with pytest.raises(WeightLoadError, match="missing"):
        load_into(c.unet, {"conv_in.weight": torch.zeros(32, 4, 3, 3)}, "unet")
    with pytest.raises(FileNotFoundError, match=r"unet/unet/config.json: missing .*diffusers layout"):
        load_sd_folder(str(sd_folder / "unet"))


def test_vidrd_folder_round_trip(sd_folder, tmp_path):
    c = load_sd_folder(str(sd_folder))
    with torch.no_grad():
        next(c.unet.temporal_parameters()).add_(1.0)
    save_vidrd(str(tmp_path / "ckpt"), c)
    back = load_vidrd(str(tmp_path / "ckpt"))
    for a, b in zip(c.unet.state_dict().values(), back.unet.state_dict().values(), strict=True):
        assert torch.equal(a, b)
    assert back.prediction_type == V_PREDICTION
    assert torch.equal(back.text_encoder(["abc"]), c.text_encoder(["abc"]))


def test_lightning_checkpoint_weights_only(sd_folder, tmp_path):
    c = load_sd_folder(str(sd_folder), text_encoder=False)
    state = {f"unet.{k}": v.clone() + 1 for k, v in c.unet.state_dict().items()}
    torch.save({"state_dict": state, "global_step": 7, "epoch": 0}, tmp_path / "last.ckpt")
    rep = load_lightning_checkpoint(c.unet, str(tmp_path / "last.ckpt"))
    assert rep.missing == [] and rep.temporal_initialised == []
    assert torch.equal(c.unet.conv_in.weight, state["unet.conv_in.weight"])
    with pytest.raises(WeightLoadError, match="no weights under prefix"):
        load_lightning_checkpoint(c.unet, str(tmp_path / "last.ckpt"), prefix="ema.")


def test_single_file_text_encoder_from_openclip_layout(tmp_path):
    from safetensors.torch import load_file, save_file
    from transformers import CLIPTextConfig

    from tests.tiny_sd import TEXT, text_to_openclip, tiny_text_model, write_tokenizer

    tok = write_tokenizer(tmp_path / "tokenizer")
    text = tiny_text_model(len(tok))
    path = tmp_path / "sd21.safetensors"
    write_single_file(path)
    ldm = load_file(str(path))
    ldm.update({k: v.contiguous() for k, v in text_to_openclip(text.state_dict()).items()})
    save_file(ldm, str(path))
    text_cfg = CLIPTextConfig(**{**TEXT, "vocab_size": len(tok)})
    tok_dir = str(tmp_path / "tokenizer")
    c = load_sd_single_file(
        str(path), original_config=tiny_cfg(), image_size=64, tokenizer_dir=tok_dir, text_config=text_cfg
    )
    rep = c.reports[-1]
    assert rep.part == "text_encoder" and rep.missing == [] and rep.unexpected == []
    got = c.text_encoder.model.state_dict()
    assert all(torch.equal(got[k], v) for k, v in text.state_dict().items() if k in got)
    assert torch.allclose(
        c.text_encoder(["a red square"]),
        text(
            c.text_encoder.tokenizer(
                ["a red square"], padding="max_length", max_length=77, return_tensors="pt"
            ).input_ids
        )[0],
        atol=1e-6,
    )
