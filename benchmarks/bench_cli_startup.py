"""Issue 21, part 1: wall time from process start to the help text, for `vidrd` and its subcommands, beside
`git --help` and `pip --help` (what users compare a CLI with), each the median of several runs, one process each.

    python benchmarks/bench_cli_startup.py [--runs 7] [--json OUT.json]
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

VIDRD = [["--help"], ["shards", "--help"], ["manifest", "--help"], ["curate", "--help"], ["generate", "--help"],
         ["eval", "ucf101", "--help"], ["convert", "vidrd-release", "--help"]]  # fmt: skip


def wall(cmd: list[str], runs: int) -> float:
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=7)
    ap.add_argument("--json")
    args = ap.parse_args()
    vidrd = shutil.which("vidrd") or str(Path(sys.executable).parent / "vidrd")
    rows = [{"command": "vidrd " + " ".join(a), "seconds": round(wall([vidrd, *a], args.runs), 3)} for a in VIDRD]
    for peer in (["git", "--help"], [sys.executable, "-m", "pip", "--help"]):
        if shutil.which(peer[0]):
            rows.append({"command": " ".join(peer).replace(sys.executable, "python"),
                         "seconds": round(wall(peer, args.runs), 3)})  # fmt: skip
    for r in rows:
        print(f"{r['seconds']:7.3f} s  {r['command']}")
    if args.json:
        Path(args.json).write_text(json.dumps({"runs": args.runs, "date": time.strftime("%Y-%m-%d"), "rows": rows}))


if __name__ == "__main__":
    main()
