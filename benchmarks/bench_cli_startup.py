"""Wall time from process start to the help text, for `vidrd` and its subcommands, beside
`git --help` and `pip --help` (what users compare a CLI with), each the median of several runs, one process each.

    python -m benchmarks.bench_cli_startup [--runs 7] [--json OUT.json]
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
from pathlib import Path

from benchmarks.common import median_of, write_results

VIDRD = [["--help"], ["shards", "--help"], ["manifest", "--help"], ["curate", "--help"], ["generate", "--help"],
         ["eval", "ucf101", "--help"], ["convert", "vidrd-release", "--help"]]  # fmt: skip


def wall(cmd: list[str], runs: int) -> float:
    """Median seconds from process start to exit."""
    return median_of(
        lambda: subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True), runs
    )


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
    write_results(args.json, rows, runs=args.runs)


if __name__ == "__main__":
    main()
