"""BLIP-2 captioning on tiny random models, OOM back-off, caption prompts and answer checks."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from curation.captioning import (
    BLIP2_TEMPLATES,
    FALLBACK,
    caption_or_fallback,
    check_answer,
    pick_template,
    readable_label,
)
from curation.models.batching import BatchStats, run_batched
from curation.models.blip2 import Blip2Captioner
from curation.models.tiny import tiny_blip2


def test_out_of_memory_halves_the_batch_and_loses_nothing():
    calls = []

    def fn(chunk):
        calls.append(len(chunk))
        if len(chunk) > 2:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2 GiB")
        return [x * 10 for x in chunk]

    stats = BatchStats()
    assert run_batched(fn, list(range(7)), 8, stats) == [x * 10 for x in range(7)]
    assert stats.oom_retries == 2 and stats.final_batch_size == 2 and calls[:3] == [7, 4, 2]
    with pytest.raises(ValueError, match="not oom"):  # other errors are not swallowed
        run_batched(lambda c: (_ for _ in ()).throw(ValueError("not oom")), [1, 2], 2)
    with pytest.raises(RuntimeError, match="out of memory"):  # one item that does not fit is an error
        run_batched(lambda c: (_ for _ in ()).throw(RuntimeError("CUDA error: out of memory")), [1], 4)


@pytest.fixture(scope="module")
def blip2_folders(tmp_path_factory):
    d = tmp_path_factory.mktemp("blip2")
    return {lm: tiny_blip2(d / lm, lm) for lm in ("opt", "t5")}


def _images(n: int) -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    return [rng.integers(0, 255, (40 + i, 56, 3), dtype=np.uint8) for i in range(n)]


def test_blip2_batches_give_the_same_answers_as_one_batch(blip2_folders):
    cap = Blip2Captioner.from_pretrained(str(blip2_folders["t5"]), device="cpu", dtype=torch.float32, max_new_tokens=6)
    images, prompts = _images(5), ["a video of a person"] * 5
    cap.batch_size = 5
    whole = cap.caption(images, prompts)
    cap.batch_size = 2
    assert cap.caption(images, prompts) == whole and len(whole) == 5
    assert all(isinstance(a, str) and a for a in whole)  # the T5 variant answers something for every image
    with pytest.raises(ValueError, match="5 images but 4 prompts"):
        cap.caption(images, prompts[:4])


def test_blip2_decoder_only_answers_leave_out_the_prompt(blip2_folders, monkeypatch):
    cap = Blip2Captioner.from_pretrained(str(blip2_folders["opt"]), device="cpu", dtype=torch.float32)
    assert cap.model.config.use_decoder_only_language_model
    tok = cap.processor.tokenizer
    answer = tok.convert_tokens_to_ids(["man", "playing"])

    def generate(input_ids, **kw):  # what OPT returns: the prompt tokens, then the new ones
        return torch.cat([input_ids, torch.tensor(answer).expand(len(input_ids), -1)], 1)

    monkeypatch.setattr(cap.model, "generate", generate)
    assert cap.caption(_images(2), ["a video of the people", "a video"]) == ["man playing", "man playing"]


def test_blip2_missing_folder_says_what_to_give(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"blip2-opt-2\.7b"):
        Blip2Captioner.from_pretrained(str(tmp_path / "nothing"), device="cpu")


def test_templates_labels_and_answer_checks():
    rng = np.random.default_rng(0)
    assert {pick_template(rng) for _ in range(200)} == set(range(len(BLIP2_TEMPLATES)))
    assert readable_label("playing_guitar") == readable_label("PlayingGuitar") == "playing guitar"
    label = "playing guitar"
    prompt = BLIP2_TEMPLATES[1].format(label=label)
    assert check_answer("  ", prompt, label) == "empty"
    assert check_answer("A short caption for a video", prompt, label) == "repeats_prompt"
    assert check_answer("playing guitar", prompt, label) == "only_label"
    assert check_answer("a man a man a man a man", prompt, label) == "repetitive"
    assert check_answer("guitar guitar guitar on stage", prompt, label) == "repetitive"
    assert check_answer("a man playing an acoustic guitar on a stage", prompt, label) is None
    assert caption_or_fallback("", prompt, label) == (FALLBACK.format(label=label), "empty")
    assert caption_or_fallback(" a man  playing guitar outside. ", prompt, label) == (
        "a man playing guitar outside",
        None,
    )
