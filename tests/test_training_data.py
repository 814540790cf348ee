"""The shard -> clip stream: clip sampling, seeking decode, mixing, exact epoch length, skips."""

import json

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from media.video import decode_clip, decode_frames, encode_mp4
from shards.writer import ShardWriter, finalize
from tests.conftest import make_sample
from training.data import (
    ClipConfig,
    ShardSet,
    SkipSample,
    StreamPlan,
    VideoTextStream,
    batches_per_worker,
    clip_indices,
    collate,
    samples_in,
    to_clip,
)
from vidrd.synthetic import moving_square

CLIP = ClipConfig(frames=4, stride=2, size=16)


def test_clip_indices_and_bad_settings():
    rng = np.random.default_rng(0)
    for _ in range(20):
        idx = clip_indices(12, CLIP, rng)
        assert len(idx) == 4 and np.all(np.diff(idx) == 2) and idx[0] >= 0 and idx[-1] < 12
    with pytest.raises(SkipSample, match="6 frames < 7"):
        clip_indices(6, CLIP, rng)
    for bad in ({"frames": 0}, {"stride": 0}, {"size": 2}):
        with pytest.raises(ValueError):
            ClipConfig(**bad)


def test_seeking_decode_matches_full_decode():
    frames = moving_square("red", "right", frames=240, width=64, height=48)
    data = encode_mp4(frames, 24.0)
    for idx in ([0, 4, 8], [150, 154, 158, 162], [239]):
        a = decode_clip(data, idx, 24.0)
        b, _ = decode_frames(data, idx)
        assert np.array_equal(a, b), idx


def test_to_clip_shape_and_range():
    x = to_clip(moving_square("blue", "up", frames=4, width=40, height=30), 16, np.random.default_rng(0))
    assert x.shape == (3, 4, 16, 16) and x.min() >= -1 and x.max() <= 1


@pytest.fixture
def sets(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    with ShardWriter(str(a), "a", max_samples=3) as w:
        for i in range(6):
            w.write(make_sample(i, frames=12, source="a"))
        short = make_sample(50, frames=5, source="a")  # fewer frames than a clip needs
        w.write(short)
        bad = make_sample(51, source="a")
        bad.mp4 = b"\x00" * 300  # does not decode
        w.write(bad)
    finalize(str(a))
    with ShardWriter(str(b), "b") as w:
        for i in range(4):
            w.write(make_sample(10 + i, frames=12, source="b"))
    finalize(str(b))
    return a, b


def plan(sets, **kw):
    base = dict(sets=sets, clip=CLIP, batch_size=2, batches_per_worker=3, shuffle_buffer=4, seed=0)
    return StreamPlan(**{**base, **kw})


def test_exact_epoch_length_skips_counted_and_weights(sets):
    a, b = sets
    ds = VideoTextStream(plan([ShardSet(str(a), 1.0), ShardSet(str(b), 0.0)]))
    out = list(ds)
    assert len(out) == 6
    assert all(k.startswith("a-") for k in (e["key"] for e in out))
    assert all(e["video"].shape == (3, 4, 16, 16) for e in out)
    long = list(VideoTextStream(plan([ShardSet(str(a))], batches_per_worker=15)))
    assert len(long) == 30 and sum(e["skipped"] for e in long) >= 2  # the short and the undecodable ones
    assert {e["key"] for e in long} == {f"a-id{i}" for i in range(6)}
    mixed = list(VideoTextStream(plan([ShardSet(str(a)), ShardSet(str(b), 3.0)], batches_per_worker=8)))
    assert sum(e["key"].startswith("b-") for e in mixed) > sum(e["key"].startswith("a-") for e in mixed)


def test_open_shards_mix_batches_across_shards(tmp_path):
    """Curated shards hold runs of related samples (here: one caption per shard, like a class-sorted manifest).
    Reading one shard at a time, a batch holds a couple of captions; reading 8 side by side, many."""
    out = tmp_path / "sorted"
    with ShardWriter(str(out), "s", max_samples=6) as w:
        for i in range(48):
            w.write(make_sample(i, frames=8, source="s", caption=f"class {i // 6}"))
    finalize(str(out))
    clip = ClipConfig(frames=2, stride=2, size=16)

    def distinct_per_batch(open_shards: int) -> float:
        ds = VideoTextStream(plan([ShardSet(str(out))], clip=clip, batch_size=8, batches_per_worker=10,
                                  open_shards=open_shards))  # fmt: skip
        caps = [e["caption"] for e in ds]
        assert len(caps) == 80
        return float(np.mean([len(set(caps[k : k + 8])) for k in range(0, 80, 8)]))

    one, eight = distinct_per_batch(1), distinct_per_batch(8)
    assert one <= 3.0 and eight >= one + 1.5, (one, eight)


def test_truncated_shard_is_skipped(sets):
    a, _ = sets
    t = a / "a-000001.tar"
    t.write_bytes(t.read_bytes()[:3000])
    out = list(VideoTextStream(plan([ShardSet(str(a))], batches_per_worker=5)))
    assert len(out) == 10 and sum(e["skipped"] for e in out) >= 1


def test_ranks_and_workers_get_equal_batches_and_different_samples(sets):
    a, b = sets
    s = [ShardSet(str(a)), ShardSet(str(b))]
    assert samples_in(s) == 12 and batches_per_worker(12, 2, 2, 2) == 2
    per_rank = []
    for rank in (0, 1):
        dl = DataLoader(VideoTextStream(plan(s, rank=rank, batches_per_worker=2)), batch_size=2, num_workers=2,
                        collate_fn=collate)  # fmt: skip
        batches = list(dl)
        assert len(batches) == 4 and all(isinstance(x["video"], torch.Tensor) for x in batches)
        per_rank.append([k for x in batches for k in x["key"]])
    assert per_rank[0] != per_rank[1]


def test_make_example_skips_unusable_samples():
    from training.data import make_example

    rng = np.random.default_rng(0)
    good = make_sample(0, frames=12)
    raw = {"__key__": good.key, "mp4": good.mp4, "json": json.dumps(good.meta).encode(), "txt": b"x"}
    assert make_example(raw, CLIP, rng)["caption"] == "x"  # no captions in .json: the .txt caption
    short = make_sample(1, frames=5)
    with pytest.raises(SkipSample, match="frames"):
        make_example({**raw, "mp4": short.mp4, "json": json.dumps(short.meta).encode()}, CLIP, rng)
    with pytest.raises(SkipSample, match="no caption"):
        make_example({**raw, "json": json.dumps({**good.meta, "captions": [" "]}).encode(), "txt": b""}, CLIP, rng)
    multi = {**raw, "json": json.dumps({**good.meta, "captions": ["one", "two", "three"]}).encode()}
    assert {make_example(multi, CLIP, rng)["caption"] for _ in range(30)} == {"one", "two", "three"}


def test_a_filter_over_index_columns_halves_the_epoch_and_the_stream(tmp_path):
    from shards.filters import FilterError
    from training.data import UnusableDataError
    from training.datamodule import ShardDataModule

    out = tmp_path / "s"
    with ShardWriter(str(out), "webvid", max_samples=2) as w:  # 8 samples: every other one 20 frames long
        for i in range(8):
            w.write(make_sample(i, frames=20 if i % 2 else 12))
    finalize(str(out))
    every, half = ShardSet(str(out)), ShardSet(str(out), where="frames >= 16")
    assert samples_in([every]) == 8 and samples_in([half]) == 4
    kept = {f"webvid-id{i}" for i in (1, 3, 5, 7)}
    got = list(VideoTextStream(plan([half], batches_per_worker=6)))
    assert len(got) == 12 and {e["key"] for e in got} == kept and sum(e["skipped"] for e in got) == 0
    # The data module's epoch follows the filtered count: per worker and per rank (2 workers, batch 2).
    whole = ShardDataModule([every], clip=CLIP, batch_size=2, num_workers=2)
    filtered = ShardDataModule([half], clip=CLIP, batch_size=2, num_workers=2)
    assert whole._batches_per_worker() == 2 and filtered._batches_per_worker() == 1
    assert batches_per_worker(samples_in([half]), 2, 2, 2) == 1  # two ranks split the 4 kept samples
    with pytest.raises(FilterError, match="unknown column 'speed'"):  # named at start, before any stream
        ShardDataModule([ShardSet(str(out), where="speed >= 0.3")], clip=CLIP)
    with pytest.raises(FilterError, match="does not parse"):
        ShardDataModule([ShardSet(str(out), where="frames >=")], clip=CLIP)
    with pytest.raises(UnusableDataError, match="keeps no sample"):
        VideoTextStream(plan([ShardSet(str(out), where="frames > 1000")]))
