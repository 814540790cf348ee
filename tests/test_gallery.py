"""``vidrd shards gallery --where ... --sort ...`` : what a filter keeps and drops, in the sort order, with
the signals shown; checked as a page and, where Chromium and Playwright are installed, in headless Chromium."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

from shards.writer import ShardWriter, finalize
from tests.conftest import make_sample
from vidrd.cli import main as vidrd_main

MOTION = {0: 0.1, 1: 0.9, 2: 0.5, 3: 0.2, 4: 0.7, 5: None}  # sample 5: curated before the signals


@pytest.fixture(scope="module")
def shards(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("gallery") / "shards"
    with ShardWriter(str(out), "webvid", max_samples=3) as w:
        for i, motion in MOTION.items():
            s = make_sample(i)
            if motion is not None:
                s.meta.update(motion=motion, cuts=[])
            w.write(s)
    finalize(str(out))
    return out


def sections(page: str) -> dict[str, list[str]]:
    """Keys of the entries under each section heading, in page order."""
    out: dict[str, list[str]] = {}
    for name, body in re.findall(r'<h2 id="(\w+)">.*?</h2>\n(.*?)(?=<h2|</body>)', page, re.S):
        out[name] = re.findall(r'<div class="s" id="([^"]+)">', body)
    return out


def gallery(shards: Path, out: Path, *extra: str) -> str:
    assert vidrd_main(["shards", "gallery", str(shards), "--out", str(out), *extra]) == 0
    return (out / "index.html").read_text()


def test_a_filtered_gallery_lists_what_is_kept_and_dropped_in_sort_order(shards, tmp_path, capsys):
    page = gallery(shards, tmp_path / "g", "--where", "motion >= 0.3", "--sort", "motion", "--desc")
    got = sections(page)
    assert got["kept"] == ["webvid-id1", "webvid-id4", "webvid-id2"]  # 0.9, 0.7, 0.5
    assert got["dropped"] == ["webvid-id3", "webvid-id0", "webvid-id5"]  # 0.2, 0.1, then no motion (null) last
    assert "3 kept, 3 dropped" in capsys.readouterr().out and "motion 0.9" in page
    assert len(list((tmp_path / "g" / "thumbs").glob("*.jpg"))) == 6
    assert vidrd_main(["shards", "gallery", str(shards), "--out", str(tmp_path / "x"), "--where", "speed > 1"]) == 2
    assert "speed" in capsys.readouterr().err  # an unknown column is named
    assert vidrd_main(["shards", "gallery", str(shards), "--out", str(tmp_path / "y"), "--sort", "nope"]) == 2


def chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")


@pytest.mark.skipif(chromium() is None, reason="needs Chromium (Debian: apt install chromium)")
def test_the_gallery_in_headless_chromium(shards, tmp_path):
    sync_api = pytest.importorskip("playwright.sync_api", reason="needs playwright (pip install playwright)")
    page_html = gallery(shards, tmp_path / "g", "--where", "motion >= 0.3 and cuts == 0", "--sort", "motion")
    errors: list[str] = []
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium(), args=["--no-sandbox"])
        page = browser.new_page()
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.goto((tmp_path / "g" / "index.html").as_uri())
        page.wait_for_load_state("load")
        images = page.evaluate("[...document.images].map(i => [i.alt, i.complete, i.naturalWidth])")
        kept = page.evaluate("[...document.querySelectorAll('#kept ~ .s')].map(d => d.id)")
        text = page.inner_text("body")
        browser.close()
    assert errors == []
    assert len(images) == 6 and all(done and width > 0 for _, done, width in images)  # every thumbnail loads
    assert "a green square moving left" in text and "motion 0.5" in text and "where motion >= 0.3" in text
    assert kept[:3] == ["webvid-id2", "webvid-id4", "webvid-id1"] == sections(page_html)["kept"]


def test_paths_and_filters_enter_the_page_as_text_never_as_markup(shards, tmp_path):
    """A set folder named like markup and a ``--where`` text with markup in it show as text: the page holds no
    element the data made."""
    hostile = tmp_path / "<img src=x onerror=alert(1)>"
    shutil.copytree(shards, hostile)
    for extra in ((), ("--where", "motion >= 0.3 or '<script>x</script>' == key")):
        page = gallery(hostile, tmp_path / f"g{len(extra)}", *extra)
        assert "<img src=x" not in page and "<script>" not in page
        assert "shards: " + str(tmp_path).replace("&", "&amp;") + "/&lt;img src=x onerror=alert(1)&gt;" in page
    assert "&lt;script&gt;" in page
