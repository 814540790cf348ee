"""What a user waits for from ``vidrd generate``: process start to the finished video file, per
``--fast`` mode, with a cold and a warm compile cache, each a fresh process on the same checkpoint.

1. A full-size VidRD with random weights (SD 2.1 shapes, ``benchmarks.common.vidrd_components``; ``--tiny``: the
   tests' tiny one, for a CPU check of this script) is saved as a checkpoint folder.
2. For each row, ``python -m vidrd.cli generate --checkpoint ... --frames 16 --steps 50 --guidance 10 --fast MODE``
   runs in a new process with ``VIDRD_CACHE`` set: a fresh folder for ``cold`` rows, the one the previous
   compile filled for ``warm`` rows. ``wall_s``: Popen to exit (imports, loading, compiling, sampling, decode,
   writing the mp4); ``video_s``: what the command itself reports for generating.

    python -m benchmarks.bench_first_video --work /tmp/fv [--json out.json] [--tiny]
"""

from __future__ import annotations

import argparse
import re
import time
from pathlib import Path
from typing import Any

from benchmarks.common import emit, run_vidrd, save_random_checkpoint, write_results

ROWS = (("off", "cold"), ("graphs", "cold"), ("auto", "cold"), ("compile", "cold"), ("compile", "warm"))


def generate(ckpt: Path, mode: str, cache: Path, video: Path, tiny: bool) -> dict[str, Any]:
    size = ["--height", "32", "--width", "32", "--frames", "4", "--steps", "4", "--clip-frames", "4",
            "--prompt-frames", "2"] if tiny else ["--frames", "16", "--steps", "50"]  # fmt: skip
    wall, out = run_vidrd("generate", "--checkpoint", str(ckpt), "--prompt", "a red square moving left",
                          "--guidance", "10", "--fast", mode, *size, "--out", str(video),
                          env={"VIDRD_CACHE": str(cache)})  # fmt: skip
    took = re.search(r"video\(s\) in ([0-9.]+) s", out)
    picked = re.search(r"fast path: (\w+)", out)
    return {"wall_s": round(wall, 1), "video_s": float(took.group(1)) if took else None,
            "picked": picked.group(1) if picked else None}  # fmt: skip


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--work", required=True, help="a scratch folder (checkpoint, caches, videos)")
    ap.add_argument("--json")
    ap.add_argument("--tiny", action="store_true", help="the tiny test model (checks the script on a CPU)")
    a = ap.parse_args(argv)
    work = Path(a.work).resolve()  # the runs start in the repository root
    ckpt = work / "ckpt"
    t0 = time.perf_counter()
    if not (ckpt / "unet").exists():
        save_random_checkpoint(ckpt, a.tiny)
    emit({"checkpoint_s": round(time.perf_counter() - t0, 1)})
    rows = []
    for k, (mode, state) in enumerate(ROWS):
        # cold: a folder nothing has compiled into; warm: the folder the row before compiled into
        cache = work / ("cache-warm" if state == "warm" or mode == "compile" else f"cache-{k}")
        row = {"fast": mode, "cache": state, **generate(ckpt, mode, cache, work / f"v{k}.mp4", a.tiny)}
        rows.append(row)
        emit(row)
        if a.json:  # partial results survive a run cut short
            write_results(a.json, rows)
    write_results(a.json, rows)
    return rows


if __name__ == "__main__":
    main()
