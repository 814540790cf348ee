"""`vidrd shards` on good shards and on broken ones."""

import json
import tarfile

import pytest

from shards.writer import ShardWriter, finalize
from tests.conftest import make_sample
from vidrd.cli import main


def run(capsys, *argv):
    code = main(list(argv))
    out = capsys.readouterr()
    return code, out.out, out.err


def test_ls_table_and_json(shard_dir, capsys):
    code, out, _ = run(capsys, "shards", "ls", str(shard_dir))
    assert code == 0
    assert "webvid-000000.tar" in out and "3 shards, 5 samples" in out
    code, out, _ = run(capsys, "shards", "ls", str(shard_dir), "--json")
    data = json.loads(out)
    assert [s["samples"] for s in data["shards"]] == [2, 2, 1]
    assert data["total"]["samples"] == 5 and data["broken"] == 0


def test_stats_from_index_and_from_scan_agree(shard_dir, capsys):
    _, out, _ = run(capsys, "shards", "stats", str(shard_dir), "--json")
    a = json.loads(out)
    _, out, _ = run(capsys, "shards", "stats", str(shard_dir), "--json", "--scan")
    b = json.loads(out)
    assert a["from"] == "_index.parquet" and b["from"] == "shard scan"
    for d in (a, b):
        assert d["samples"] == 5 and d["by_source"] == {"webvid": 5}
        assert d["frames"]["p50"] == 12 and d["duration_s"]["mean"] == 1.5
    assert a["rejects_by_reason"] == {"test/too_short": 1}
    code, out, _ = run(capsys, "shards", "stats", str(shard_dir))
    assert code == 0 and "duration_s" in out and "test/too_short" in out


def test_show_writes_a_contact_sheet(shard_dir, tmp_path, capsys):
    png = tmp_path / "sheet.png"
    code, out, _ = run(capsys, "shards", "show", str(shard_dir), "webvid-id2", "--out", str(png), "--frames", "4")
    assert code == 0
    assert "a blue square moving up" in out and '"frames": 12' in out
    from PIL import Image

    img = Image.open(png)
    assert img.width > 4 * 48 and img.height > 32
    code, _, err = run(capsys, "shards", "show", str(shard_dir), "nope")
    assert code == 1 and "no sample with key 'nope'" in err


def test_verify_ok(shard_dir, capsys):
    code, out, _ = run(capsys, "shards", "verify", str(shard_dir), "--json")
    rep = json.loads(out)
    assert code == 0 and rep["ok"] and rep["samples"] == rep["decoded"] == 5


def test_gallery(shard_dir, tmp_path, capsys):
    out_dir = tmp_path / "g"
    code, out, _ = run(capsys, "shards", "gallery", str(shard_dir), "--out", str(out_dir), "--limit", "3")
    html = (out_dir / "index.html").read_text()
    assert code == 0 and "3 samples" in out
    assert html.count('class="s"') == 3 and "a red square moving right" in html
    assert len(list((out_dir / "thumbs").glob("*.jpg"))) == 3


# --- broken shards -------------------------------------------------------------------------------------


def test_truncated_tar_is_reported_not_raised(shard_dir, capsys):
    t = shard_dir / "webvid-000001.tar"
    data = t.read_bytes()
    t.write_bytes(data[: len(data) // 2])
    code, out, _ = run(capsys, "shards", "ls", str(shard_dir), "--json")
    rows = {r["shard"]: r for r in json.loads(out)["shards"]}
    assert code == 1 and rows["webvid-000001.tar"]["status"].startswith("broken")
    code, out, _ = run(capsys, "shards", "verify", str(shard_dir), "--json")
    rep = json.loads(out)
    problems = {(p["shard"], p["problem"]) for p in rep["problems"]}
    assert code == 1
    assert ("webvid-000001.tar", "truncated_or_unreadable") in problems
    # The sample cut in half is named (incomplete in the tar, or absent though indexed); the others pass.
    assert {p["key"] for p in rep["problems"] if p["key"]} == {"webvid-id3"}
    code, out, _ = run(capsys, "shards", "verify", str(shard_dir))
    assert code == 1 and "FAILED" in out


def test_corrupt_video_and_wrong_frame_count(tmp_path, capsys):
    out = tmp_path / "s"
    bad = make_sample(0)
    bad.mp4 = b"\x00" * 500
    wrong = make_sample(1)
    wrong.meta["frames"] = 99
    with ShardWriter(str(out), "webvid") as w:
        w.write(bad)
        w.write(wrong)
        w.write(make_sample(2))
    finalize(str(out))
    code, stdout, _ = run(capsys, "shards", "verify", str(out), "--json")
    rep = json.loads(stdout)
    kinds = sorted((p["key"], p["problem"]) for p in rep["problems"])
    assert code == 1
    assert kinds == [("webvid-id0", "undecodable"), ("webvid-id1", "frame_count"), ("webvid-id1", "frame_count")]


def test_duplicate_keys_across_shards_and_missing_members(tmp_path, capsys):
    d = tmp_path / "d"
    for part in ("a", "b"):
        with ShardWriter(str(d), f"s{part}", part=part) as w:
            w.write(make_sample(0))
    extra = d / "sc-000000.tar"
    with tarfile.open(extra, "w") as tar:
        tar.add(str(d / "sa-000000.tar"), arcname="lonely.mp4")
    code, out, _ = run(capsys, "shards", "verify", str(d), "--json", "--no-decode")
    problems = {(p["key"], p["problem"]) for p in json.loads(out)["problems"]}
    assert code == 1
    assert ("webvid-id0", "duplicate_key") in problems
    assert ("lonely", "missing_member") in problems


def test_unreadable_file_and_missing_path(tmp_path, capsys):
    d = tmp_path / "x"
    d.mkdir()
    (d / "junk-000000.tar").write_bytes(b"this is not a tar file at all" * 40)
    code, out, _ = run(capsys, "shards", "verify", str(d), "--json")
    assert code == 1 and json.loads(out)["problems"][0]["problem"] == "truncated_or_unreadable"
    code, _, err = run(capsys, "shards", "ls", str(tmp_path / "nothing"))
    assert code == 2 and "no such file or folder" in err
    code, _, err = run(capsys, "shards", "stats", str(tmp_path))
    assert code == 2 and "no .tar shards" in err


def test_single_tar_and_url_paths(shard_dir, capsys):
    code, out, _ = run(capsys, "shards", "ls", f"file://{shard_dir}/webvid-000000.tar", "--json")
    assert code == 0 and json.loads(out)["total"]["samples"] == 2
    code, out, _ = run(capsys, "shards", "verify", f"file://{shard_dir}", "--json")
    assert code == 0 and json.loads(out)["samples"] == 5


@pytest.mark.parametrize("cmd", ["ls", "stats", "show", "verify", "gallery"])
def test_help_explains_each_subcommand(cmd, capsys):
    with pytest.raises(SystemExit) as e:
        main(["shards", cmd, "--help"])
    assert e.value.code == 0 and "usage: vidrd shards" in capsys.readouterr().out


def hostile_tar(path, mp4: bytes) -> list[str]:
    """A tar whose member names climb out of any folder, are absolute, very long, or links."""
    import io
    import tarfile

    keys = ["../../../escaped/evil", "/tmp/absolute-evil", "k" * 300, "ok-sample"]
    with tarfile.open(path, "w") as tar:
        for key in keys:
            for ext, data in (("mp4", mp4), ("txt", b"a caption"), ("json", b'{"source": "x", "frames": 12}')):
                info = tarfile.TarInfo(f"{key}.{ext}")
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
        link = tarfile.TarInfo("linked.mp4")
        link.type, link.linkname = tarfile.SYMTYPE, "/etc/passwd"
        tar.addfile(link)
    return keys


def test_gallery_and_show_write_only_inside_their_output(tmp_path, capsys, monkeypatch):
    from tests.conftest import make_sample

    root = tmp_path / "deep" / "er" / "shards"
    root.mkdir(parents=True)
    keys = hostile_tar(root / "evil-000000.tar", make_sample(0).mp4)
    out_dir = tmp_path / "deep" / "er" / "g"
    before = {p for p in tmp_path.rglob("*")}
    code, _, _ = run(capsys, "shards", "gallery", str(root), "--out", str(out_dir))
    assert code == 0
    written = {p for p in tmp_path.rglob("*")} - before
    assert written and all(out_dir in p.parents or p == out_dir for p in written), written
    assert not (tmp_path / "escaped").exists() and not (tmp_path / "deep" / "escaped").exists()
    assert not __import__("os").path.exists("/tmp/absolute-evil.jpg")
    thumbs = list((out_dir / "thumbs").glob("*.jpg"))
    assert len(thumbs) == len(keys) and all(len(t.name) < 40 for t in thumbs)
    page = (out_dir / "index.html").read_text()
    assert "../../../escaped/evil" in page and "k" * 300 in page  # shown, escaped, as text only
    # Links planted in the output folder, at the page's and a thumbnail's names, are replaced, never written through.
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    for planted in (out_dir / "index.html", thumbs[0]):
        planted.unlink()
        planted.symlink_to(victim)
    assert run(capsys, "shards", "gallery", str(root), "--out", str(out_dir))[0] == 0
    assert victim.read_text() == "precious" and not (out_dir / "index.html").is_symlink() and not thumbs[0].is_symlink()
    # `show` names its default output from the key with path characters replaced, short enough for any disk.
    monkeypatch.chdir(tmp_path)
    code, _out, _ = run(capsys, "shards", "show", str(root), "k" * 300)
    assert code == 0 and (tmp_path / f"{'k' * 100}.png").exists()


def rewrite_member(tar_path, ext: str, data: bytes) -> None:
    """Replace every ``.<ext>`` member of a tar with ``data``."""
    import io
    import tarfile

    members = []
    with tarfile.open(tar_path) as t:
        for m in t.getmembers():
            members.append((m, data if m.name.endswith(f".{ext}") else t.extractfile(m).read()))
    with tarfile.open(tar_path, "w") as t:
        for m, body in members:
            m.size = len(body)
            t.addfile(m, io.BytesIO(body))


@pytest.mark.parametrize("json_body", [b"[1, 2, 3]", b'{"frames": "many", "fps": "fast", "source": 5}'])
def test_odd_sample_json_is_reported_not_a_crash(shard_dir, tmp_path, capsys, json_body):
    (shard_dir / "_index.parquet").unlink()
    rewrite_member(shard_dir / "webvid-000000.tar", "json", json_body)
    assert run(capsys, "shards", "stats", str(shard_dir))[0] == 0
    assert run(capsys, "shards", "gallery", str(shard_dir), "--out", str(tmp_path / "g"))[0] == 0
    code, out, _ = run(capsys, "shards", "verify", str(shard_dir), "--json")
    assert code == 1 and "bad_json" in {p["problem"] for p in json.loads(out)["problems"]}


@pytest.mark.parametrize("which", ["_index.parquet", "_rejects.parquet"])
@pytest.mark.parametrize("damage", ["garbage", "no columns"])
def test_a_broken_index_or_rejects_file_is_a_clear_error(shard_dir, capsys, which, damage):
    import pyarrow as pa
    import pyarrow.parquet as pq

    if damage == "garbage":
        (shard_dir / which).write_bytes(b"PAR1 this is not parquet")
    else:
        pq.write_table(pa.table({"something": [1]}), shard_dir / which)
    code, _, err = run(capsys, "shards", "stats", str(shard_dir))
    assert code == 2 and which in err and "Traceback" not in err
    if which == "_index.parquet":  # verify still checks the tars and says what is wrong, as JSON when asked
        code, out, _ = run(capsys, "shards", "verify", str(shard_dir), "--json")
        rep = json.loads(out)
        assert code == 1 and rep["samples"] > 0 and rep["problems"][0]["problem"] == "index_unreadable"


def test_verify_without_an_index_finds_a_corrupt_header_and_duplicate_members(shard_dir, capsys):
    import tarfile

    (shard_dir / "_index.parquet").unlink()
    tar_path = shard_dir / "webvid-000000.tar"
    with tarfile.open(tar_path) as t:
        members = t.getmembers()
    data = bytearray(tar_path.read_bytes())
    victim = members[len(members) // 2]  # a header in the middle of the file
    data[victim.offset : victim.offset + 100] = b"\xff" * 100
    tar_path.write_bytes(bytes(data))
    code, out, _ = run(capsys, "shards", "verify", str(shard_dir), "--json")
    rep = json.loads(out)
    assert code == 1
    broken = [p for p in rep["problems"] if p["problem"] == "truncated_or_unreadable"]
    assert broken and "damaged header" in broken[0]["detail"] and broken[0]["shard"] == "webvid-000000.tar"


def test_verify_flags_a_member_stored_twice(shard_dir, capsys):
    import tarfile

    (shard_dir / "_index.parquet").unlink()
    tar_path = shard_dir / "webvid-000001.tar"
    with tarfile.open(tar_path) as t:
        members = [(m, t.extractfile(m).read()) for m in t.getmembers()]
    import io

    with tarfile.open(tar_path, "w") as t:
        for m, body in members + members:  # every member twice
            t.addfile(m, io.BytesIO(body))
    code, out, _ = run(capsys, "shards", "verify", str(shard_dir), "--json")
    problems = json.loads(out)["problems"]
    assert code == 1
    dup = [p for p in problems if p["problem"] == "duplicate_member"]
    assert len(dup) == len(members)


TERMINAL_CONTROLS = "\x1b\x07\x9b\u202e\r"


def test_show_and_tables_print_data_as_text_never_as_terminal_commands(tmp_path, capsys, monkeypatch):
    """A caption that retitles the window, clears the screen, hides text or forges a line, a source name with a
    C1 control, a malformed long-video timeline: printed escaped, drawn only when well formed, never a crash."""
    s = make_sample(0, caption="ok\x1b]0;pwned\x07\x1b[2J\x9b31m\u202etxt.exe\r\nmetadata: forged")
    timeline = {"times": [0, "x"], "keep": [1], "clip_score": [], "p_yes": [None]}
    s.meta.update(source="web\x1b[2Jvid", note="\x1b[8mhidden", timeline=timeline)
    root = tmp_path / "shards"
    with ShardWriter(str(root), "webvid") as w:
        w.write(s)
    finalize(str(root))
    monkeypatch.chdir(tmp_path)
    code, out, err = run(capsys, "shards", "show", str(root), s.key)
    assert code == 0 and not set(TERMINAL_CONTROLS) & set(out + err)
    assert "ok\\x1b]0;pwned\\x07\\x1b[2J\\x9b31m\\u202etxt.exe\\x0d\\x0ametadata: forged" in out
    assert "warning: timeline metadata not drawn: times holds something that is not a non-negative number" in err
    for args in (("stats", str(root)), ("stats", str(root), "--scan")):
        code, out, err = run(capsys, "shards", *args)
        assert code == 0 and "web\\x1b[2Jvid" in out and not set(TERMINAL_CONTROLS) & set(out + err)
    code, out, _ = run(capsys, "shards", "stats", str(root), "--json")
    assert json.loads(out)["by_source"] == {"web\x1b[2Jvid": 1}  # JSON keeps the data exact (and escaped)
    nested = tmp_path / "nested"
    deep = make_sample(1)
    with ShardWriter(str(nested), "webvid") as w:
        w.write(deep)
    finalize(str(nested))
    rewrite_member(next(nested.glob("*.tar")), "json", b"[" * 100_000 + b"]" * 100_000)  # deeper than Python recurses
    for args in (("show", str(nested), deep.key), ("stats", str(nested), "--scan"), ("verify", str(nested))):
        code, _, err = run(capsys, "shards", *args)
        assert "Traceback" not in err and code in (0, 1), args


def test_stats_skip_nan_signals_and_verify_names_a_metadata_number_that_is_not_one(tmp_path, capsys):
    import pyarrow as pa
    import pyarrow.parquet as pq

    root = tmp_path / "shards"
    with ShardWriter(str(root), "webvid", max_samples=1) as w:
        for i in range(3):
            w.write(make_sample(i))
    finalize(str(root))
    motions = [0.5, float("nan"), float("inf")]  # what a hostile or buggy writer leaves; this project's refuses
    index = pq.read_table(root / "_index.parquet").sort_by("key")
    pq.write_table(index.set_column(index.schema.get_field_index("motion"), "motion", pa.array(motions)),
                   root / "_index.parquet")  # fmt: skip
    for tar, motion in zip(sorted(root.glob("*.tar")), motions, strict=True):
        rewrite_member(tar, "json", json.dumps({**make_sample(0).meta, "motion": motion}).encode())
    for extra in ((), ("--scan",)):
        code, out, _ = run(capsys, "shards", "stats", str(root), "--json", *extra)
        got = json.loads(out)  # strict JSON: NaN would not parse in most readers
        assert code == 0 and got["motion"]["count"] == 1 and got["motion"]["mean"] == 0.5, extra
    rewrite_member(sorted(root.glob("*.tar"))[0], "json", json.dumps({**make_sample(0).meta, "fps": "fast"}).encode())
    code, out, _ = run(capsys, "shards", "verify", str(root), "--json", "--no-decode")
    problems = {(p["problem"], p["detail"]) for p in json.loads(out)["problems"]}
    assert code == 1 and ("bad_json", ".json fps is not a positive number: 'fast'") in problems
