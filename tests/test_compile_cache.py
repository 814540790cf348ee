"""Compile once, reuse everywhere: the keyed compile folder, what happens to a damaged or unwritable
one, a second process reusing the first one's compiled kernels, and how ``--fast auto`` picks by the work."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from inference.fast_mode import break_even_clips, choose
from training.model import compile_cache as cc

COMPILE_TWICE = """
import json, torch
from training.model.compile_cache import enable_compile_cache
cache = enable_compile_cache("cpu")
f = torch.compile(torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.GELU(), torch.nn.Linear(16, 2)))
y = f(torch.randn(3, 8))
from torch._dynamo.utils import counters
print(json.dumps({"state": cache.state, "folder": str(cache.folder), **dict(counters["inductor"])}))
"""


def run_compile(root: Path) -> tuple[dict, str]:
    env = {**os.environ, "VIDRD_CACHE": str(root)}
    done = subprocess.run([sys.executable, "-c", COMPILE_TWICE], capture_output=True, text=True, env=env,
                          cwd=Path(__file__).resolve().parents[1], timeout=600)  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout.strip().splitlines()[-1]), done.stderr


def test_a_second_process_reuses_compiled_kernels_and_a_damaged_cache_starts_over(tmp_path):
    first, _ = run_compile(tmp_path)
    assert first["state"] == "cold" and first.get("fxgraph_cache_miss") == 1
    folder = Path(first["folder"])
    assert folder.parent == tmp_path / "compile" and (folder / cc.MANIFEST).exists()
    second, _ = run_compile(tmp_path)
    assert second["state"] == "warm" and second.get("fxgraph_cache_hit") == 1 and not second.get("fxgraph_cache_miss")
    for so in folder.rglob("*.so"):  # what a disk error or a half-copied cache leaves: torch alone would crash
        so.write_bytes(b"garbage")
    third, err = run_compile(tmp_path)
    assert third["state"] == "rebuilt" and third.get("fxgraph_cache_miss") == 1
    assert "changed since it was written; starting it over" in err


def test_the_folder_is_keyed_by_torch_and_the_model_code(tmp_path, monkeypatch):
    code = tmp_path / "code"
    code.mkdir()
    (code / "unit.py").write_text("x = 1\n")
    monkeypatch.setattr(cc, "CODE_DIRS", (code,))
    key = cc.cache_key("cpu")
    assert cc.cache_key("cpu") == key
    (code / "unit.py").write_text("x = 2\n")
    changed = cc.cache_key("cpu")
    assert changed != key
    monkeypatch.setattr(torch, "__version__", "0.0.1")
    assert cc.cache_key("cpu") not in (key, changed)
    monkeypatch.setenv(cc.ENV, str(tmp_path / "mine"))
    assert cc.cache_root() == tmp_path / "mine"


def test_unwritable_or_damaged_folders_warn_and_never_crash(tmp_path, caplog):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    off = cc.open_folder(blocker / "compile")  # cannot be created: no persistence, one line
    assert off.folder is None and off.state == "off"
    assert "is not writable" in caplog.text and caplog.records[-1].levelname == "WARNING"
    caplog.clear()
    folder = tmp_path / "c"
    assert cc.open_folder(folder).state == "cold"
    (folder / "kernel.bin").write_bytes(b"1234")
    cc.write_manifest(folder)
    assert cc.open_folder(folder).state == "warm"
    (folder / "kernel.bin").write_bytes(b"12345")
    again = cc.open_folder(folder)
    assert again.state == "rebuilt" and not (folder / "kernel.bin").exists()
    assert "kernel.bin changed since it was written" in caplog.text
    (folder / cc.MANIFEST).write_text("{not json")
    assert cc.open_folder(folder).state == "rebuilt"
    for shape in ("[1, 2]", '{"k": 5}', '{"k": [1]}', '{"../../etc/passwd": [1, "x"]}', "[" * 50_000):
        (folder / "kernel.bin").write_bytes(b"1")
        (folder / cc.MANIFEST).write_text(shape)  # valid JSON (but the last) of another shape: damaged, not a crash
        assert cc.open_folder(folder).state == "rebuilt", shape


def test_auto_compiles_only_when_the_work_repays_it(tmp_path, monkeypatch):
    monkeypatch.setenv(cc.ENV, str(tmp_path))
    assert (break_even_clips("warm"), break_even_clips("cold")) == (20, 157)
    fast, why = choose("auto", "cuda", 1)  # one 16-frame video: CUDA graphs, nothing to compile
    assert fast.cuda_graphs and not fast.compile and "fast path: graphs" in why and "cold" in why
    fast, why = choose("auto", "cuda", 200)
    assert fast.compile and fast.cuda_graphs and "fast path: compile" in why
    assert not choose("auto", "cuda", 30)[0].compile  # cold: 30 clips do not repay 2 min of compiling
    warm = tmp_path / "compile" / cc.cache_key("cuda")
    warm.mkdir(parents=True)
    (warm / "kernel.bin").write_bytes(b"x")
    assert choose("auto", "cuda", 30)[0].compile  # warm: they do
    assert choose("compile", "cuda", 1)[0].compile and not choose("graphs", "cuda", 500)[0].compile
    assert not choose("off", "cuda", 500)[0].any
    fast, why = choose("compile", "cpu", 500)
    assert not fast.any and "no-op off CUDA" in why
    with pytest.raises(ValueError, match="one of auto, compile, graphs, off"):
        choose("fastest", "cuda", 1)
