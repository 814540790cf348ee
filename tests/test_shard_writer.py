import json
import os

import pytest
import webdataset as wds

from manifests.io import read_table
from manifests.keys import InvalidKeyError
from manifests.schema import INDEX_SCHEMA, REJECTS_SCHEMA
from shards.writer import DuplicateKeyError, ShardWriter, complete_parts, finalize
from tests.conftest import make_sample


def test_shards_are_byte_for_byte_what_webdataset_writes(tmp_path):
    """The writer makes its tars with tarfile (no torch import in curation workers); the bytes stay webdataset's."""
    import io
    import subprocess
    import sys

    from shards.writer import TAR_MTIME

    samples = [make_sample(i) for i in range(3)]
    with ShardWriter(str(tmp_path), "webvid", max_samples=10) as w:
        for s in samples:
            w.write(s)
    ours = (tmp_path / "webvid-000000.tar").read_bytes()
    buf = io.BytesIO()
    theirs = wds.TarWriter(buf, user="vidrd", group="vidrd", encoder=False, mtime=TAR_MTIME)
    for s in samples:
        meta = json.dumps({**s.meta, "captions": [s.caption]}, sort_keys=True, ensure_ascii=False).encode()
        theirs.write({"__key__": s.key, "mp4": s.mp4, "txt": s.caption.encode(), "json": meta})
    theirs.close()
    assert ours == buf.getvalue()
    code = (  # writing a shard never loads torch
        "import sys; from shards.writer import Sample, ShardWriter\n"
        f"with ShardWriter({str(tmp_path / 'lone')!r}, 'webvid') as w:\n"
        "    w.write(Sample('webvid-id1', b'mp4', 'a cap', {'source': 'webvid', 'source_id': 'id1', 'stage': 't',"
        " 'frames': 1, 'fps': 8.0, 'width': 2, 'height': 2}))\n"
        "sys.exit(3 if 'torch' in sys.modules else 0)"
    )
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    assert subprocess.run([sys.executable, "-c", code], cwd=repo).returncode == 0
    assert (tmp_path / "lone" / "webvid-000000.tar").exists()


def test_round_trip_through_webdataset(tmp_path):
    samples = [make_sample(i) for i in range(5)]
    with ShardWriter(str(tmp_path), "webvid", max_samples=2) as w:
        for s in samples:
            w.write(s)
    assert sorted(os.listdir(tmp_path)) == ["_parts", "webvid-000000.tar", "webvid-000001.tar", "webvid-000002.tar"]
    urls = [str(tmp_path / f"webvid-{i:06d}.tar") for i in range(3)]
    got = {s["__key__"]: s for s in wds.WebDataset(urls, shardshuffle=False)}
    assert sorted(got) == sorted(s.key for s in samples)
    for s in samples:
        g = got[s.key]
        assert g["mp4"] == s.mp4
        assert g["txt"].decode() == s.caption
        meta = json.loads(g["json"])
        assert meta == {**s.meta, "captions": [s.caption]}


def test_size_bound_starts_new_shards(tmp_path):
    s = make_sample(0)
    with ShardWriter(str(tmp_path), "x", max_bytes=len(s.mp4) * 2 + 100) as w:
        for i in range(6):
            w.write(make_sample(i, source="x"))
    assert len(w.shards) >= 3
    for name in w.shards:
        assert (tmp_path / name).stat().st_size < len(s.mp4) * 4 + 20000


def test_index_and_rejects_after_finalize(shard_dir):
    index = read_table(str(shard_dir / "_index.parquet"), INDEX_SCHEMA)
    rejects = read_table(str(shard_dir / "_rejects.parquet"), REJECTS_SCHEMA)
    rows = {r["key"]: r for r in index.to_pylist()}
    assert len(rows) == 5
    r = rows["webvid-id0"]
    assert (r["shard"], r["frames"], r["fps"], r["duration"]) == ("webvid-000000.tar", 12, 8.0, 1.5)
    assert r["caption_length"] == len("a red square moving right") and r["num_captions"] == 1
    assert rows["webvid-id4"]["shard"] == "webvid-000002.tar"
    assert rejects.to_pylist() == [
        {
            "input_id": "id99",
            "source": "webvid",
            "uri": "",
            "stage": "test",
            "reason": "too_short",
            "message": "7 frames < 29",
        }
    ]


def test_bad_and_duplicate_keys_raise(tmp_path):
    with ShardWriter(str(tmp_path), "w") as w:
        bad = make_sample(0)
        bad.key = "webvid.id0"
        with pytest.raises(InvalidKeyError):
            w.write(bad)
        w.write(make_sample(1))
        with pytest.raises(DuplicateKeyError):
            w.write(make_sample(1))
        missing = make_sample(2)
        del missing.meta["fps"]
        with pytest.raises(ValueError, match="fps"):
            w.write(missing)


def test_shards_are_byte_identical_across_runs(tmp_path):
    for run in ("a", "b"):
        with ShardWriter(str(tmp_path / run), "w") as w:
            for i in range(3):
                w.write(make_sample(i))
    assert (tmp_path / "a" / "w-000000.tar").read_bytes() == (tmp_path / "b" / "w-000000.tar").read_bytes()


def test_abort_leaves_no_temp_file_and_part_incomplete(tmp_path):
    with pytest.raises(RuntimeError), ShardWriter(str(tmp_path), "w", part="p0") as w:
        w.write(make_sample(0))
        raise RuntimeError("worker died")
    assert not [p for p in os.listdir(tmp_path) if p.endswith(".tmp") or p.endswith(".tar")]
    assert complete_parts(str(tmp_path)) == set()


def test_parts_merge_and_cross_part_duplicates_are_caught(tmp_path):
    for p, ids in (("p0", [0, 1]), ("p1", [2, 3])):
        with ShardWriter(str(tmp_path), "w", part=p, first_number=int(p[1]) * 100) as w:
            for i in ids:
                w.write(make_sample(i))
    assert complete_parts(str(tmp_path)) == {"p0", "p1"}
    index, _ = finalize(str(tmp_path))
    assert sorted(index.column("shard").to_pylist()) == ["w-000000.tar"] * 2 + ["w-000100.tar"] * 2
    with ShardWriter(str(tmp_path), "w", part="p2", first_number=200) as w:
        w.write(make_sample(0))
    with pytest.raises(DuplicateKeyError, match="webvid-id0"):
        finalize(str(tmp_path))


def test_writer_on_an_fsspec_memory_url():
    out = "memory://vidrd-test/shards"
    with ShardWriter(out, "m") as w:
        w.write(make_sample(0, source="m"))
    index, _ = finalize(out)
    assert index.column("key").to_pylist() == ["m-id0"]
