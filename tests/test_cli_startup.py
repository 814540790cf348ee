"""`vidrd --help` answers at once: the parsers import neither torch, Ray nor Lightning, and the commands that need
no model (`vidrd shards ...`, `vidrd manifest`) do not either. Checked in fresh interpreters (the test process
has them all loaded already)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
HEAVY = ("torch", "ray", "lightning", "diffusers", "transformers")


def loaded_after(code: str) -> list[str]:
    """The heavy packages a fresh Python has imported after running ``code``."""
    probe = f"{code}\nimport sys\nprint(sorted(m for m in {HEAVY!r} if m in sys.modules))"
    r = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, cwd=REPO, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    return eval(r.stdout.strip().splitlines()[-1])  # a list literal printed by the probe itself


@pytest.mark.parametrize(
    "argv",
    [
        [],
        ["shards"],
        ["shards", "ls"],
        ["manifest"],
        ["curate"],
        ["generate"],
        ["eval", "ucf101"],
        ["convert", "vidrd-release"],
        ["demo"],
    ],
)
def test_help_imports_no_heavy_package(argv):
    code = f"from vidrd.cli import main\ntry:\n    main({[*argv, '--help']!r})\nexcept SystemExit:\n    pass"
    assert loaded_after(code) == []


def test_model_free_commands_stay_model_free(shard_dir, tmp_path, sources):
    code = (
        "from vidrd.cli import main\n"
        f"main(['shards', 'ls', {str(shard_dir)!r}])\n"
        f"main(['shards', 'stats', {str(shard_dir)!r}])\n"
        f"main(['shards', 'verify', {str(shard_dir)!r}, '--no-decode'])\n"
        f"main(['manifest', 'webvid', {str(sources['webvid'])!r}, '--out', {str(tmp_path / 'm.parquet')!r}])"
    )
    assert loaded_after(code) == []


def test_the_light_choice_lists_match_the_registries():
    from curation.cli import STAGE_NAMES
    from curation.stages import STAGES
    from devices import DTYPE_NAMES, torch_dtype
    from inference.cli import SCHEDULES as SCHEDULE_NAMES
    from inference.cli import SUFFIXES
    from inference.long_video import SCHEDULES
    from inference.video_out import SUFFIXES as WRITER_SUFFIXES
    from manifests.builders import BUILDERS
    from manifests.cli import SOURCE_NAMES

    assert sorted(STAGE_NAMES) == sorted(STAGES) and sorted(SOURCE_NAMES) == sorted(BUILDERS)
    assert tuple(SCHEDULE_NAMES) == tuple(SCHEDULES) and tuple(SUFFIXES) == tuple(WRITER_SUFFIXES)
    assert all(torch_dtype(n) is not None for n in DTYPE_NAMES)


def test_sampling_defaults_have_one_source():
    """The paper's steps, guidance and size, the clip length and a long video's default length are written once
    (``inference.choices``): the settings dataclasses, the sampler and every command line agree."""
    import inspect

    from inference.choices import CLIP_FRAMES, LONG_VIDEO_FRAMES, PAPER_GUIDANCE, PAPER_SIZE, PAPER_STEPS
    from inference.eval.ucf101_eval import EvalSettings
    from inference.long_video import LongVideoConfig
    from inference.pipeline import GenerationSettings
    from inference.sampler import DDIMSampler
    from vidrd.cli import build_parser

    gen, ev = GenerationSettings(), EvalSettings()
    assert (gen.steps, gen.guidance, gen.height, gen.frames) == (PAPER_STEPS, PAPER_GUIDANCE, PAPER_SIZE, CLIP_FRAMES)
    assert (ev.steps, ev.guidance, ev.height) == (PAPER_STEPS, PAPER_GUIDANCE, PAPER_SIZE)
    assert LongVideoConfig().clip_frames == CLIP_FRAMES
    params = inspect.signature(DDIMSampler).parameters
    assert (params["steps"].default, params["guidance"].default) == (PAPER_STEPS, PAPER_GUIDANCE)
    parser = build_parser()
    g = parser.parse_args(["generate", "--checkpoint", "c", "--prompt", "p", "--out", "o.mp4"])
    assert (g.steps, g.guidance, g.frames) == (PAPER_STEPS, PAPER_GUIDANCE, LONG_VIDEO_FRAMES)
    e = parser.parse_args(["eval", "ucf101", "--checkpoint", "c", "--ucf-root", "u", "--out", "r.json", "--i3d", "i",
                           "--c3d", "c"])  # fmt: skip
    assert (e.steps, e.guidance, e.frames, e.size) == (PAPER_STEPS, PAPER_GUIDANCE, CLIP_FRAMES, PAPER_SIZE)


def test_stages_and_sources_come_from_one_table_each():
    """The CLI's choices and the builders are read from ``curation.stage_registry`` and ``manifests.sources``; an
    unknown stage is refused naming the known ones."""
    import pytest

    from curation.stage_registry import STAGE_CLASSES, STAGE_NAMES, build_stage, stage_class
    from manifests.builders import BUILDERS
    from manifests.sources import BUILDER_MODULES

    assert list(BUILDERS) == list(BUILDER_MODULES)
    assert all(BUILDERS[n].__module__ == m for n, m in BUILDER_MODULES.items())
    assert set(STAGE_NAMES) == set(STAGE_CLASSES)
    assert all(stage_class(n).name == n for n in STAGE_NAMES)  # each class says the name it is registered under
    assert build_stage("captioned", {"short_side": 64}, 3).cfg.short_side == 64
    with pytest.raises(ValueError, match=r"unknown stage 'blur'; choose one of \['captioned'"):
        stage_class("blur")
    with pytest.raises(ValueError, match="unknown settings"):
        build_stage("captioned", {"short_sid": 64}, 0)
