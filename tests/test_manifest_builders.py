"""Every builder on a small tree in its dataset's published layout, plus malformed inputs."""

import json
import os
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from manifests.build import build_manifest, rejects_path_for
from manifests.builders import BUILDERS, ManifestBuildError
from manifests.builders.common import parse_duration
from manifests.io import read_table
from manifests.schema import REJECTS_SCHEMA, SOURCE_SCHEMA
from vidrd.cli import main


def rows_by_id(result):
    return {r["id"]: r for r in result.rows}


def test_kinetics(sources):
    res = BUILDERS["kinetics700"](str(sources["kinetics700"]))
    rows = rows_by_id(res)
    assert sorted(rows) == [f"yt{i:03d}Ab-x_000010_000020" for i in range(4)]
    r = rows["yt000Ab-x_000010_000020"]
    assert r["label"] == "moving right" and r["split"] == "train" and r["duration"] == 10.0
    assert os.path.exists(r["uri"]) and r["uri"].endswith("train/moving right/yt000Ab-x_000010_000020.mp4")
    assert [(j["input_id"], j["reason"]) for j in res.rejects] == [("missingClip_000000_000010", "missing_file")]
    assert "train.csv:6" in res.rejects[0]["message"]


def test_moments(sources):
    res = BUILDERS["moments"](str(sources["moments"]))
    rows = rows_by_id(res)
    assert sorted(rows) == ["drifting/clip_3.mp4", "falling/clip_1.mp4", "rising/clip_2.mp4", "sliding/clip_0.mp4"]
    assert rows["falling/clip_1.mp4"]["label"] == "falling" and rows["falling/clip_1.mp4"]["split"] == "training"
    assert len(res.rejects) == 1 and "trainingSet.csv:5" in res.rejects[0]["message"]


def test_videolt(sources):
    res = BUILDERS["videolt"](str(sources["videolt"]))
    rows = rows_by_id(res)
    assert rows["lt_0000"]["label"] == "square, sliding block"
    assert rows["lt_0001"]["label"] == "circle, sliding block"
    assert [j["input_id"] for j in res.rejects] == ["lt_gone"]


def test_laion(sources):
    res = BUILDERS["laion"](str(sources["laion"]))
    rows = rows_by_id(res)
    assert sorted(rows) == [f"{i:09d}" for i in range(4)]
    r = rows["000000000"]
    assert r["kind"] == "image" and r["captions"] == ["a red square on a grey textured background"]
    assert (r["width"], r["height"]) == (384, 288)
    assert [(j["input_id"], j["reason"]) for j in res.rejects] == [("000000004", "missing_file")]
    assert "failed_to_download" in res.rejects[0]["message"]


def test_webvid(sources):
    res = BUILDERS["webvid"](str(sources["webvid"]))
    rows = rows_by_id(res)
    assert sorted(rows) == ["1000", "1001", "1002", "1003"]
    assert rows["1000"]["duration"] == 1.0 and rows["1003"]["duration"] == 25.0
    assert rows["1000"]["captions"] == ["a red square moving right"]
    assert [j["input_id"] for j in res.rejects] == ["9999"]


def test_tgif_merges_captions_of_one_gif(sources):
    res = BUILDERS["tgif"](str(sources["tgif"]))
    rows = rows_by_id(res)
    assert sorted(rows) == ["tumblr_0000", "tumblr_0001", "tumblr_0002"]
    assert rows["tumblr_0000"]["captions"] == ["a red square moves right", "the red block slides"]
    assert rows["tumblr_0000"]["uri"].endswith(".gif")


def test_vatex_keeps_all_captions(sources):
    res = BUILDERS["vatex"](str(sources["vatex"]))
    rows = rows_by_id(res)
    assert len(rows) == 3
    assert len(rows["vx000-AbC_000005_000015"]["captions"]) == 3
    assert rows["vx000-AbC_000005_000015"]["split"] == "training"
    assert [j["input_id"] for j in res.rejects] == ["vxgone_000000_000010"]


def test_pexels(sources):
    res = BUILDERS["pexels"](str(sources["pexels"]))
    rows = rows_by_id(res)
    assert sorted(rows) == ["500", "501", "502"]
    assert rows["500"]["captions"] == ["Red square moving right"] and rows["500"]["width"] == 64


def test_build_manifest_writes_schema_tables_and_counts_add_up(sources, tmp_path):
    out = tmp_path / "m" / "webvid.parquet"
    s = build_manifest("webvid", str(sources["webvid"]), str(out))
    table = read_table(str(out), SOURCE_SCHEMA)
    rejects = read_table(rejects_path_for(str(out)), REJECTS_SCHEMA)
    assert table.schema.equals(SOURCE_SCHEMA)
    assert (table.num_rows, rejects.num_rows) == (s.rows, s.rejects) == (4, 1)
    assert not [p for p in os.listdir(out.parent) if p.endswith(".tmp")]


# --- bad input -------------------------------------------------------------------------------------------


def test_missing_annotation_file_names_the_file(tmp_path):
    (tmp_path / "videos").mkdir()
    with pytest.raises(ManifestBuildError, match=r"tgif-v1\.0\.tsv"):
        BUILDERS["tgif"](str(tmp_path))
    with pytest.raises(ManifestBuildError, match="annotations"):
        BUILDERS["kinetics700"](str(tmp_path))


def test_malformed_rows_become_rejects_with_file_and_line(tmp_path):
    root = tmp_path / "k"
    (root / "annotations").mkdir(parents=True)
    (root / "annotations" / "train.csv").write_text(
        "label,youtube_id,time_start,time_end,split\nx,abc,notanumber,3,train\nx,,1,2,train\n"
    )
    res = BUILDERS["kinetics700"](str(root))
    assert [r["reason"] for r in res.rejects] == ["bad_annotation", "bad_annotation"]
    assert "train.csv:2" in res.rejects[0]["message"] and "train.csv:3" in res.rejects[1]["message"]


def test_bad_header_is_an_error(tmp_path):
    (tmp_path / "results_2M_train.csv").write_text("a,b\n1,2\n")
    with pytest.raises(ManifestBuildError, match="header"):
        BUILDERS["webvid"](str(tmp_path))


def test_invalid_json_names_file_and_line(tmp_path):
    (tmp_path / "vatex_training_v1.0.json").write_text('[{"videoID": "a",\n "enCap": [}')
    with pytest.raises(ManifestBuildError, match=r"vatex_training_v1.0.json: invalid JSON at line 2"):
        BUILDERS["vatex"](str(tmp_path))


def test_videolt_unknown_class_and_bad_duration(tmp_path, sources):
    root = tmp_path / "lt"
    (root / "label").mkdir(parents=True)
    (root / "label" / "label_names.txt").write_text("a\nb\n")
    (root / "label" / "train.lst").write_text("v1 7\nv2 x\n")
    res = BUILDERS["videolt"](str(root))
    assert [r["reason"] for r in res.rejects] == ["bad_annotation", "bad_annotation"]
    assert "unknown class ids [7]" in res.rejects[0]["message"]
    w = tmp_path / "wv"
    w.mkdir()
    (w / "results_2M_train.csv").write_text("videoid,duration,name,page_dir\n5,PTbogus,cap,001\n")
    assert BUILDERS["webvid"](str(w)).rejects[0]["message"].endswith("not a duration: 'PTbogus'")


def test_duplicate_ids_are_rejected_not_lost(tmp_path, sources):
    items = json.loads((sources["vatex"] / "vatex_training_v1.0.json").read_text())
    root = tmp_path / "vx"
    (root / "videos").mkdir(parents=True)
    for p in (sources["vatex"] / "videos").iterdir():
        (root / "videos" / p.name).write_bytes(p.read_bytes())
    (root / "vatex_training_v1.0.json").write_text(json.dumps(items + items[:1]))
    s = build_manifest("vatex", str(root), str(tmp_path / "vx.parquet"))
    assert (s.rows, s.reasons) == (3, {"missing_file": 1, "duplicate": 1})
    assert s.rows + s.rejects == len(items) + 1


def test_parse_duration():
    assert parse_duration("PT00H01M05S") == 65.0
    assert parse_duration("12.5") == 12.5
    assert parse_duration(None) is None
    with pytest.raises(ValueError):
        parse_duration("soon")


def test_cli_manifest(sources, tmp_path, capsys):
    out = tmp_path / "tgif.parquet"
    assert main(["manifest", "tgif", str(sources["tgif"]), "--out", str(out)]) == 0
    assert "3 rows" in capsys.readouterr().out
    assert pq.read_table(out).num_rows == 3
    assert main(["manifest", "tgif", str(tmp_path / "nowhere"), "--out", str(out)]) == 2
    assert "tgif-v1.0.tsv" in capsys.readouterr().err


def test_manifest_through_an_fsspec_url(sources, tmp_path):
    out = f"file://{tmp_path}/p.parquet"
    s = build_manifest("pexels", f"file://{sources['pexels']}", out)
    assert s.rows == 3 and Path(tmp_path / "p.parquet").exists()


# An unterminated quote in the second data row: before, it swallowed every later row of the file silently.
BROKEN_CSV = {
    "kinetics700": (
        "annotations/train.csv",
        "label,youtube_id,time_start,time_end,split\n",
        '"moving right,bad,0,1,train\n',
    ),
    "moments": ("trainingSet.csv", "", '"falling/broken.mp4,falling,1,1\n'),
    "webvid": (
        "results_2M_train.csv",
        "videoid,contentUrl,duration,page_dir,name\n",
        '77,http://x/77.mp4,PT00H00M01S,001,"an open quote\n',
    ),
    "pexels": ("meta.csv", "id,title,duration\n", '88,"unterminated,4\n'),
}


@pytest.mark.parametrize("source", sorted(BROKEN_CSV))
def test_an_unterminated_quote_costs_one_reject_not_the_rest_of_the_file(sources, tmp_path, source):
    import shutil

    root = tmp_path / source
    shutil.copytree(sources[source], root)
    name, header, bad = BROKEN_CSV[source]
    if source == "pexels":  # the same items, as one CSV table
        ids = [r["id"] for r in BUILDERS[source](str(root)).rows]
        for table in [*root.glob("*.parquet*"), *root.glob("*.csv")]:
            table.unlink()
        (root / name).write_text(header + "".join(f"{i},a video,4\n" for i in ids))
    before = BUILDERS[source](str(root))
    path = root / name
    lines = path.read_text().splitlines(keepends=True)
    start = 1 if header else 0
    path.write_text("".join([*lines[: start + 1], bad, *lines[start + 1 :]]))
    after = BUILDERS[source](str(root))
    assert len(after.rows) == len(before.rows)  # every row after the broken one is still read
    new = [j for j in after.rejects if "unparsable CSV" in j["message"]]
    assert len(after.rejects) == len(before.rejects) + 1 and len(new) == 1, after.rejects
    assert new[0]["reason"] == "bad_annotation"
    assert f"{name.rsplit('/', 1)[-1]}:{start + 2}" in new[0]["message"] and "unparsable CSV" in new[0]["message"]


def test_webvid_line_numbers_count_from_where_a_row_starts(tmp_path):
    from vidrd.synthetic import moving_shape, write_webvid

    write_webvid(tmp_path, [("1", moving_shape("red", "left", frames=4, size=16), "a caption\nover two lines")])
    with open(tmp_path / "results_2M_train.csv", "a") as f:
        f.write("2,http://x/2.mp4,PT00H00M01S,000,no file for this one\n")
    res = BUILDERS["webvid"](str(tmp_path))
    assert [r["captions"] for r in res.rows] == [["a caption\nover two lines"]]
    assert "results_2M_train.csv:4" in res.rejects[0]["message"]  # the row starts on line 4, not 3


def copy_source(sources, tmp_path, name):
    import shutil

    root = tmp_path / name
    shutil.copytree(sources[name], root)
    return root


def test_hostile_annotation_values_are_rejects_or_read_right(sources, tmp_path):
    import pyarrow as pa

    # Kinetics: nan / inf / negative times are bad annotations, not a crash.
    root = copy_source(sources, tmp_path, "kinetics700")
    with open(root / "annotations" / "train.csv", "a") as f:
        f.write("moving up,ytnan,nan,10,train\nmoving up,ytinf,0,inf,train\nmoving up,ytneg,5,1,train\n")
    res = BUILDERS["kinetics700"](str(root))
    assert sum("must be finite seconds" in r["message"] for r in res.rejects) == 3 and len(res.rows) == 4

    # VATEX: a bare string is one caption (not one per letter); a number is rejected; an integer id is read.
    root = copy_source(sources, tmp_path, "vatex")
    items = json.loads((root / "vatex_training_v1.0.json").read_text())
    items[0]["enCap"] = "a single caption"
    items[1]["enCap"] = 5
    items.append({"videoID": 12345, "enCap": ["an integer id"]})
    (root / "vatex_training_v1.0.json").write_text(json.dumps(items))
    res = BUILDERS["vatex"](str(root))
    rows = rows_by_id(res)
    assert rows[items[0]["videoID"]]["captions"] == ["a single caption"]
    assert any("enCap must be a list of strings" in r["message"] for r in res.rejects)
    assert any(r["input_id"] == "12345" and r["reason"] == "missing_file" for r in res.rejects)

    # VideoLT: a file name with dots is found.
    root = copy_source(sources, tmp_path, "videolt")
    (root / "videos" / "lt_0000.mp4").rename(root / "videos" / "lt.v2.final.mp4")
    (root / "label" / "train.lst").write_text("lt.v2.final 0\nlt_0001 1\n")
    rows = rows_by_id(BUILDERS["videolt"](str(root)))
    assert sorted(rows) == ["lt.v2.final", "lt_0001"]

    # Pexels: ids stored as floats are the integer ids; a corrupt table is a clear error naming the file.
    root = copy_source(sources, tmp_path, "pexels")
    t = pq.read_table(root / "PexelVideos.parquet")
    ids = [float(i) for i in t.column("id").to_pylist()]
    pq.write_table(t.set_column(0, "id", pa.array(ids)), root / "PexelVideos.parquet")
    assert sorted(rows_by_id(BUILDERS["pexels"](str(root)))) == sorted(str(int(i)) for i in ids)
    (root / "PexelVideos.parquet").write_bytes(b"PAR1 not really")
    with pytest.raises(ManifestBuildError, match=r"PexelVideos\.parquet: not a readable Parquet table"):
        BUILDERS["pexels"](str(root))

    # LAION: a .json sidecar that is a list is ignored; integer keys in the table; a corrupt table is named.
    root = copy_source(sources, tmp_path, "laion")
    (root / "00000" / "000000000.json").write_text("[1, 2, 3]")
    pq.write_table(pa.table({"key": [4, 7], "status": ["failed_to_download", "success"]}), root / "00000.parquet")
    res = BUILDERS["laion"](str(root))
    assert "000000000" in rows_by_id(res) and {r["input_id"] for r in res.rejects} == {"4", "7"}
    (root / "00000.parquet").write_bytes(b"garbage")
    with pytest.raises(ManifestBuildError, match=r"00000\.parquet: not a readable Parquet table"):
        BUILDERS["laion"](str(root))


def test_duplicate_rejects_name_both_places(sources, tmp_path):
    root = copy_source(sources, tmp_path, "webvid")
    csv_path = root / "results_2M_train.csv"
    first_row = csv_path.read_text().splitlines()[1]
    with open(csv_path, "a") as f:
        f.write(first_row + "\n")
    out = tmp_path / "m.parquet"
    assert main(["manifest", "webvid", str(root), "--out", str(out)]) == 0
    dup = [r for r in read_table(rejects_path_for(str(out))).to_pylist() if r["reason"] == "duplicate"]
    assert len(dup) == 1 and "results_2M_train.csv:7" in dup[0]["message"]
    assert "first at" in dup[0]["message"] and "results_2M_train.csv:2" in dup[0]["message"]
