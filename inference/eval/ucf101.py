"""UCF-101 for zero-shot evaluation (paper 5.1, A.4): class names, the paper's expanded prompts, the
training-split class distribution, and the real videos.

Layout expected under ``--ucf-root`` (the official archives extracted side by side)::

    ROOT/UCF-101/<Class>/v_<Class>_gXX_cYY.avi      (UCF101.rar)
    ROOT/ucfTrainTestlist/classInd.txt, trainlist01.txt  (UCF101TrainTestSplits-RecognitionTask.zip)

Both come from the dataset's page at the University of Central Florida (crcv.ucf.edu/data/UCF101.php).
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np

# classInd.txt order (1-based in the file).
UCF101_CLASSES: tuple[str, ...] = (
    "ApplyEyeMakeup", "ApplyLipstick", "Archery", "BabyCrawling", "BalanceBeam", "BandMarching", "BaseballPitch",
    "Basketball", "BasketballDunk", "BenchPress", "Biking", "Billiards", "BlowDryHair", "BlowingCandles",
    "BodyWeightSquats", "Bowling", "BoxingPunchingBag", "BoxingSpeedBag", "BreastStroke", "BrushingTeeth",
    "CleanAndJerk", "CliffDiving", "CricketBowling", "CricketShot", "CuttingInKitchen", "Diving", "Drumming",
    "Fencing", "FieldHockeyPenalty", "FloorGymnastics", "FrisbeeCatch", "FrontCrawl", "GolfSwing", "Haircut",
    "Hammering", "HammerThrow", "HandstandPushups", "HandstandWalking", "HeadMassage", "HighJump", "HorseRace",
    "HorseRiding", "HulaHoop", "IceDancing", "JavelinThrow", "JugglingBalls", "JumpingJack", "JumpRope", "Kayaking",
    "Knitting", "LongJump", "Lunges", "MilitaryParade", "Mixing", "MoppingFloor", "Nunchucks", "ParallelBars",
    "PizzaTossing", "PlayingCello", "PlayingDaf", "PlayingDhol", "PlayingFlute", "PlayingGuitar", "PlayingPiano",
    "PlayingSitar", "PlayingTabla", "PlayingViolin", "PoleVault", "PommelHorse", "PullUps", "Punch", "PushUps",
    "Rafting", "RockClimbingIndoor", "RopeClimbing", "Rowing", "SalsaSpin", "ShavingBeard", "Shotput",
    "SkateBoarding", "Skiing", "Skijet", "SkyDiving", "SoccerJuggling", "SoccerPenalty", "StillRings",
    "SumoWrestling", "Surfing", "Swing", "TableTennisShot", "TaiChi", "TennisSwing", "ThrowDiscus",
    "TrampolineJumping", "Typing", "UnevenBars", "VolleyballSpiking", "WalkingWithDog", "WallPushups",
    "WritingOnBoard", "YoYo",
)  # fmt: skip
PROMPTS_FILE = Path(__file__).with_name("ucf101_prompts.json")
VIDEO_EXTENSIONS = (".avi", ".mp4", ".mkv", ".webm")


class UCFDataError(FileNotFoundError):
    """A UCF-101 file the evaluation needs is missing or malformed (the message says which and where from)."""


def prompts() -> dict[str, str]:
    """Class name -> the paper's expanded prompt (appendix A.4), for all 101 classes."""
    data = json.loads(PROMPTS_FILE.read_text())["classes"]
    return {c: data[c]["prompt"] for c in UCF101_CLASSES}


def read_class_index(path: str | Path) -> list[str]:
    """Class names from ``classInd.txt`` (``<1-based id> <Class>`` per line), in id order."""
    rows = [line.split() for line in Path(path).read_text().splitlines() if line.strip()]
    if any(len(r) != 2 or not r[0].isdigit() for r in rows):
        raise UCFDataError(f"{path}: expected '<id> <ClassName>' on every line")
    return [name for _, name in sorted(rows, key=lambda r: int(r[0]))]


def class_counts_from_trainlist(path: str | Path) -> Counter:
    """Videos per class in an official split file (``<Class>/v_<Class>_gXX_cYY.avi [label]`` per line)."""
    counts: Counter = Counter()
    for line in Path(path).read_text().splitlines():
        if line.strip():
            counts[line.split()[0].split("/")[0]] += 1
    unknown = set(counts) - set(UCF101_CLASSES)
    if unknown:
        raise UCFDataError(f"{path}: classes not in UCF-101: {sorted(unknown)[:5]}")
    return counts


def real_videos(ucf_root: str | Path) -> dict[str, list[Path]]:
    """Class -> its video files under ``ROOT/UCF-101/<Class>/`` (or ``ROOT/<Class>/``)."""
    root = Path(ucf_root)
    base = root / "UCF-101" if (root / "UCF-101").is_dir() else root
    found = {c: sorted(p for p in (base / c).glob("*") if p.suffix.lower() in VIDEO_EXTENSIONS)
             for c in UCF101_CLASSES if (base / c).is_dir()}  # fmt: skip
    found = {c: v for c, v in found.items() if v}
    if not found:
        raise UCFDataError(
            f"{root}: no UCF-101 videos (expected {base}/<Class>/*.avi). Download UCF101.rar from "
            "https://www.crcv.ucf.edu/data/UCF101.php and extract it there"
        )
    return found


@dataclass
class ClassDistribution:
    counts: dict[str, int]
    source: str  # where the counts came from, for the report


def class_distribution(ucf_root: str | Path | None, trainlist: str | Path | None = None) -> ClassDistribution:
    """The training-split class distribution: ``trainlist`` if given, else ``ROOT/ucfTrainTestlist/trainlist01.txt``,
    else (stated in the report) the number of videos per class folder, all splits together."""
    candidates = [Path(trainlist)] if trainlist else []
    if ucf_root is not None:
        candidates.append(Path(ucf_root) / "ucfTrainTestlist" / "trainlist01.txt")
    for c in candidates:
        if c.is_file():
            return ClassDistribution(dict(class_counts_from_trainlist(c)), str(c))
    if trainlist:
        raise UCFDataError(f"{trainlist}: not found (it is in UCF101TrainTestSplits-RecognitionTask.zip)")
    if ucf_root is None:
        raise UCFDataError(
            "give --ucf-root (UCF-101 videos) or --trainlist (trainlist01.txt) for the class distribution"
        )
    vids = real_videos(ucf_root)
    return ClassDistribution(
        {c: len(v) for c, v in vids.items()}, f"videos per class folder in {ucf_root} (all splits)"
    )


def allocate(counts: dict[str, int], n: int, seed: int = 0) -> list[str]:
    """``n`` class names following ``counts`` (largest remainder, so the shares are exact to one video),
    in a seeded random order; the same (counts, n, seed) always gives the same list."""
    classes = [c for c in UCF101_CLASSES if counts.get(c, 0) > 0]
    if not classes or n < 1:
        raise ValueError("need at least one class with videos and n >= 1")
    w = np.array([counts[c] for c in classes], dtype=np.float64)
    exact = w / w.sum() * n
    k = np.floor(exact).astype(int)
    rest = n - k.sum()
    order = np.lexsort((np.arange(len(classes)), -(exact - k)))  # largest remainder, ties by class order
    k[order[:rest]] += 1
    out = [c for c, m in zip(classes, k, strict=True) for _ in range(m)]
    np.random.default_rng(seed).shuffle(out)
    return out
