"""``vidrd curate dedup`` : a clip stored twice under two ids and once re-encoded at another size are
found as duplicates across shard sets, an unrelated clip is not; the trainer's ``where: "not is_dup"`` drops
them; a duplicates list made for another index is refused."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import cv2
import numpy as np
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from curation.dedup import (
    DedupConfig,
    bits_apart,
    clusters,
    hash_sample,
    max_signature_bits,
    phash,
    signature_bits,
    simhash,
)
from media.video import encode_mp4
from shards.reader import find_sample, load_index
from shards.sidecars import DUPS, StaleSidecarError, with_derived_columns
from shards.writer import Sample, ShardWriter, finalize
from training.data import ShardSet
from vidrd.cli import main as vidrd_main
from vidrd.synthetic import moving_square

FRAMES, FPS = 24, 8.0


def clip(seed: int, colour: str = "red", direction: str = "right") -> np.ndarray:
    return moving_square(colour, direction, frames=FRAMES, width=256, height=144, seed=seed)


def sample(key: str, mp4: bytes, width: int = 256, height: int = 144, source: str = "webvid") -> Sample:
    meta = {"source": source, "source_id": key, "stage": "test", "frames": FRAMES, "fps": FPS, "width": width,
            "height": height}  # fmt: skip
    return Sample(key, mp4, f"caption of {key}", meta)


@pytest.fixture(scope="module", autouse=True)
def ray_shut_down_after():
    """The CLI starts a local Ray in this process; later modules start their own."""
    yield
    import ray

    ray.shutdown()


@pytest.fixture(scope="module")
def sets(tmp_path_factory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("dedup")
    a, b = root / "webvid", root / "tgif"
    originals = {
        i: encode_mp4(clip(i, *[("red", "right"), ("blue", "up"), ("green", "left")][i % 3]), FPS) for i in range(6)
    }
    with ShardWriter(str(a), "webvid", max_samples=4) as w:
        for i, mp4 in originals.items():
            w.write(sample(f"webvid-v{i}", mp4))
    finalize(str(a))
    resized = np.stack([cv2.resize(f, (224, 126), interpolation=cv2.INTER_AREA) for f in clip(1, "blue", "up")])
    with ShardWriter(str(b), "tgif") as w:
        w.write(sample("tgif-copy-of-v0", originals[0], source="tgif"))  # the same file under another id
        w.write(sample("tgif-resized-v1", encode_mp4(resized, FPS, crf=24), 224, 126, source="tgif"))
        w.write(sample("tgif-other", encode_mp4(clip(40, "yellow", "down"), FPS), source="tgif"))
        w.write(sample("tgif-broken", originals[2][: len(originals[2]) // 4], source="tgif"))  # does not decode
    finalize(str(b))
    return a, b


def test_perceptual_hash_is_near_for_a_resized_copy_and_far_for_another_clip():
    v = clip(3)
    small = np.stack([cv2.resize(f, (224, 126), interpolation=cv2.INTER_AREA) for f in v])
    _, h = hash_sample(encode_mp4(v, FPS), FRAMES, 4)
    _, near = hash_sample(encode_mp4(small, FPS, crf=24), FRAMES, 4)
    _, far = hash_sample(encode_mp4(clip(50, "green", "down"), FPS), FRAMES, 4)
    assert bits_apart(h, near) <= DedupConfig().threshold < bits_apart(h, far)
    assert phash(v[0]) == phash(v[0].copy()) and 0 <= phash(v[0]) < 2**64


def test_clusters_keep_the_first_member_and_name_it():
    node = {"exact": "e", "hashes": "0000000000000000"}
    a, b, c = ({**node, "set": "s", "order": o, "key": k} for o, k in ((0, "a"), (1, "b"), (1, "c")))
    c["exact"], c["hashes"] = "other", "000000000000000f"
    rows = clusters([{"a": b, "b": c, "distance": 4}, {"a": a, "b": b, "distance": 0}])
    assert [(r["key"], r["duplicate_of"], r["kind"], r["distance"]) for r in rows] == [
        ("b", "a", "exact", 0), ("c", "a", "near", 4)
    ]  # fmt: skip


def test_dedup_across_sets_on_ray(sets, capsys):
    a, b = sets
    code = vidrd_main(["curate", "dedup", "--shards", str(a), str(b), "--num-cpus", "2"])
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert code == 0 and summary["samples"] == 10 and summary["hashed"] == 9
    assert summary["not_hashed"][0].startswith("tgif-broken: ")  # reported, not lost (it stays in the shards)
    dups = {r["key"]: r for r in pq.read_table(b / DUPS).to_pylist()}
    assert set(dups) == {"tgif-copy-of-v0", "tgif-resized-v1"}  # the unrelated clip is not a duplicate
    assert (dups["tgif-copy-of-v0"]["duplicate_of"], dups["tgif-copy-of-v0"]["kind"]) == ("webvid-v0", "exact")
    assert dups["tgif-copy-of-v0"]["duplicate_of_set"] == str(a)
    assert (dups["tgif-resized-v1"]["duplicate_of"], dups["tgif-resized-v1"]["kind"]) == ("webvid-v1", "near")
    assert pq.read_table(a / DUPS).num_rows == 0  # the first copies are kept
    assert vidrd_main(["shards", "stats", str(b), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["duplicates"] == 2
    kept = ShardSet(path=str(b), where="not is_dup").kept()
    assert sorted(kept.column("key").to_pylist()) == ["tgif-broken", "tgif-other"]


def test_a_stale_duplicates_list_is_refused_and_a_damaged_shard_reported(sets, tmp_path, capsys):
    a, b = sets
    assert vidrd_main(["curate", "dedup", "--shards", str(a), str(b), "--num-cpus", "2"]) == 0
    index = load_index(str(b))
    with_derived_columns(str(b), index, ["is_dup"])  # valid for this index
    with pytest.raises(StaleSidecarError, match="run `vidrd curate dedup` again"):
        with_derived_columns(str(b), index.slice(0, 2), ["is_dup"])  # the set curated again since: another index
    damaged = tmp_path / "damaged"
    shutil.copytree(a, damaged)
    tar = sorted(damaged.glob("*.tar"))[0]
    tar.write_bytes(tar.read_bytes()[: tar.stat().st_size // 2])
    capsys.readouterr()
    assert vidrd_main(["curate", "dedup", "--shards", str(damaged), "--num-cpus", "2"]) == 0  # finishes
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    in_tar = set(load_index(str(damaged)).filter(pc.field("shard") == tar.name).column("key").to_pylist())
    unreadable = {e.split(": ")[0] for e in summary["not_hashed"] if ": shard unreadable" in e}
    assert unreadable and unreadable <= in_tar  # the samples the damage took, each named
    assert summary["samples"] == load_index(str(damaged)).num_rows  # the counts add up to the index
    assert vidrd_main(["curate", "dedup", "--num-cpus", "2"]) == 2
    assert vidrd_main(["curate", "dedup", "--shards", str(tmp_path), "--num-cpus", "2"]) == 2


def test_a_set_named_twice_is_refused(sets, capsys):
    a, _ = sets
    assert vidrd_main(["curate", "dedup", "--shards", str(a), f"{a}/", "--num-cpus", "2"]) == 2
    assert "same shard set" in capsys.readouterr().err
    assert not (a / DUPS).exists() or pq.read_table(a / DUPS).num_rows == 0  # nothing marked


def test_only_indexed_samples_are_judged_and_a_missing_shard_is_named(sets, tmp_path, capsys):
    """A sample in a tar that the index does not list never becomes the kept copy (the indexed one would be
    marked a duplicate and neither would survive ``not is_dup``); samples of a shard the index names but the
    set lost are each reported, and the counts add up to the index."""
    a, _ = sets
    work = tmp_path / "set"
    shutil.copytree(a, work)
    first = load_index(str(work)).sort_by("key").slice(0, 1).to_pylist()[0]
    stray = tmp_path / "stray"
    with ShardWriter(str(stray), "aaa") as w:  # sorts before the set's own shards
        w.write(sample("aaa-stray-copy", find_sample(str(work), first["key"])[1]["mp4"]))
    shutil.copy(next(stray.glob("*.tar")), work / "aaa-000000.tar")
    gone = sorted(work.glob("webvid-*.tar"))[-1]
    gone_keys = set(load_index(str(work)).filter(pc.field("shard") == gone.name).column("key").to_pylist())
    gone.unlink()
    capsys.readouterr()
    assert vidrd_main(["curate", "dedup", "--shards", str(work), "--num-cpus", "2"]) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    errors = dict(e.split(": ", 1) for e in summary["not_hashed"])
    assert "not in _index.parquet" in errors.pop("aaa-stray-copy")
    assert set(errors) == gone_keys and all("missing" in e for e in errors.values())
    assert summary["hashed"] + len(gone_keys) == load_index(str(work)).num_rows
    assert first["key"] in ShardSet(path=str(work), where="not is_dup").kept().column("key").to_pylist()


def test_the_duplicates_list_replaces_a_planted_link_and_never_writes_through_it(sets, tmp_path, capsys):
    from shards.sidecars import DUPS_SCHEMA, write_sidecar

    a, _ = sets
    work = tmp_path / "set"
    shutil.copytree(a, work)
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    (work / DUPS).unlink(missing_ok=True)
    (work / DUPS).symlink_to(victim)
    write_sidecar(str(work), DUPS, DUPS_SCHEMA.empty_table(), load_index(str(work)), {})
    assert victim.read_text() == "precious" and not (work / DUPS).is_symlink()
    assert pq.read_table(work / DUPS).num_rows == 0
    (work / DUPS).unlink()
    (work / DUPS).symlink_to(tmp_path, target_is_directory=True)  # a link to a folder: not written into either
    write_sidecar(str(work), DUPS, DUPS_SCHEMA.empty_table(), load_index(str(work)), {})
    assert not (tmp_path / DUPS).exists() and (work / DUPS).is_file() and not (work / DUPS).is_symlink()
    (work / DUPS).unlink()
    (work / DUPS).mkdir()  # a folder where the table goes: one line, for the reader and the job alike
    with pytest.raises(ValueError, match=r"_dups\.parquet is not a readable table"):
        with_derived_columns(str(work), load_index(str(work)), ["is_dup"])
    assert vidrd_main(["curate", "dedup", "--shards", str(work), "--num-cpus", "2"]) == 2
    assert "is a folder" in capsys.readouterr().err


def unit_pairs(cos: float, n: int, dim: int = 512, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``n`` pairs of unit vectors at exactly cosine ``cos``."""
    rng = np.random.default_rng(seed)
    a = rng.standard_normal((n, dim))
    a /= np.linalg.norm(a, axis=1, keepdims=True)
    r = rng.standard_normal((n, dim))
    r -= (r * a).sum(1, keepdims=True) * a
    r /= np.linalg.norm(r, axis=1, keepdims=True)
    return a, cos * a + np.sqrt(1 - cos**2) * r


def test_embedding_signatures_find_close_pairs_and_skip_far_ones():
    limit = max_signature_bits(0.95)
    for cos, want_candidate, want_band in ((0.95, 0.99, 0.9), (0.98, 1.0, 0.99)):
        a, b = unit_pairs(cos, 300)
        sa, sb = simhash(a), simhash(b)
        within = np.mean([signature_bits(x, y) <= limit for x, y in zip(sa, sb, strict=True)])
        shares_band = np.mean([any(x[4 * k : 4 * k + 4] == y[4 * k : 4 * k + 4] for k in range(16))
                               for x, y in zip(sa, sb, strict=True)])  # fmt: skip
        assert within >= want_candidate and shares_band >= want_band, (cos, within, shares_band)
    a, b = unit_pairs(0.5, 300, seed=1)
    assert np.mean([signature_bits(x, y) <= limit for x, y in zip(simhash(a), simhash(b), strict=True)]) == 0.0
    assert simhash(a[:3]) == simhash(a[:3].copy())  # the same hyperplanes every call (and every actor)


def test_semantic_duplicates_by_clip_embedding_on_ray(tmp_path, capsys):
    """A mirrored copy (its perceptual hash is as far as an unrelated clip's) is found by embedding similarity
    with the CLIP given; the decision equals the cosine of the same model's embeddings, computed here."""
    from curation.scores import mean_embeddings
    from curation.shard_jobs import decode_keyframes, resize_short
    from curation.stages.long_videos import load_clip

    original = clip(0)
    videos = {"webvid-a-orig": original, "webvid-b-mirror": original[:, :, ::-1].copy(),
              "webvid-c-other": clip(40, "yellow", "down")}  # fmt: skip
    out = tmp_path / "set"
    with ShardWriter(str(out), "webvid", max_samples=3) as w:  # the broken sample alone in the second shard
        for key, v in videos.items():
            w.write(sample(key, encode_mp4(v, FPS, crf=18)))
        broken = encode_mp4(clip(7), FPS)
        w.write(sample("webvid-d-broken", broken[: len(broken) // 4]))  # its reject, never the job's end
    finalize(str(out))
    mp4s = {k: encode_mp4(v, FPS, crf=18) for k, v in videos.items()}
    assert bits_apart(*(hash_sample(mp4s[k], FRAMES, 4)[1] for k in ("webvid-a-orig", "webvid-b-mirror"))) > 8
    model = load_clip("tiny", "cpu", "float32", 8)
    frames = [resize_short(decode_keyframes(mp4s[k], FRAMES, 4), 224) for k in videos]
    e = mean_embeddings(model, frames).numpy()
    mirror, other = float(e[0] @ e[1]), max(float(e[0] @ e[2]), float(e[1] @ e[2]))
    assert mirror > other
    sim = (mirror + other) / 2
    code = vidrd_main(["curate", "dedup", "--shards", str(out), "--clip", "tiny", "--similarity", f"{sim:.7f}",
                       "--device", "cpu", "--num-cpus", "2"])  # fmt: skip
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert code == 0 and summary["duplicates"] == {"exact": 0, "near": 0, "semantic": 1}
    assert [e.split(":")[0] for e in summary["not_hashed"]] == ["webvid-d-broken"] and summary["samples"] == 4
    (row,) = pq.read_table(out / DUPS).to_pylist()
    assert (row["key"], row["duplicate_of"], row["kind"]) == ("webvid-b-mirror", "webvid-a-orig", "semantic")
    assert row["distance"] == round(1000 * (1 - mirror))
    assert vidrd_main(["curate", "dedup", "--shards", str(out), "--clip", str(tmp_path / "none"), "--num-cpus",
                       "2"]) == 2  # fmt: skip
    with pytest.raises(ValueError, match="similarity"):
        DedupConfig(similarity=0.2)
