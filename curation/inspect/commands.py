"""What ``vidrd shards`` does: ls, stats, show, verify and gallery (the parser is ``curation.inspect.cli``)."""

from __future__ import annotations

import argparse
import json
import posixpath
import re
import sys
from typing import Any

from tqdm import tqdm

from curation.inspect import render
from curation.inspect.stats import describe, ls_row, rows_from_scan, stats
from curation.inspect.verify import verify
from manifests.io import SchemaError, join, url_to_fs, write_atomic
from media.video import VideoDecodeError, decode_frames
from shards.reader import (
    ShardPathError,
    cut_count,
    find_sample,
    list_shards,
    load_index,
    load_rejects,
    number,
    sample_meta,
    scan_shard,
    shard_dir,
)


def format_table(rows: list[dict[str, Any]], columns: list[str]) -> str:
    """Plain aligned text table; cells come from data, so they are made terminal-safe."""
    text = render.terminal_text
    cells = [[text(c) for c in columns]] + [["" if r.get(c) is None else text(r.get(c)) for c in columns] for r in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(columns))]
    lines = ["  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)).rstrip() for row in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def human_bytes(n: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if n < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return str(n)


def _bar(total: int, desc: str) -> tqdm:
    return tqdm(total=total, desc=desc, unit="shard", file=sys.stderr, disable=None, leave=False)


def cmd_ls(args: argparse.Namespace) -> int:
    shards = list_shards(args.path)
    rows = []
    with _bar(len(shards), "scanning") as bar:
        for url in shards:
            rows.append(ls_row(scan_shard(url, load=False)))
            bar.update()
    total = {"shards": len(rows), "samples": sum(r["samples"] for r in rows), "bytes": sum(r["bytes"] for r in rows)}
    broken = sum(r["status"] != "ok" for r in rows)
    if args.json:
        print(json.dumps({"shards": rows, "total": total, "broken": broken}, indent=2))
    else:
        shown = [dict(r, bytes=human_bytes(r["bytes"])) for r in rows]
        print(format_table(shown, ["shard", "samples", "bytes", "status"]))
        print(
            f"\n{total['shards']} shards, {total['samples']} samples, {human_bytes(total['bytes'])}"
            + (f", {broken} broken" if broken else "")
        )
    return 1 if broken else 0


def cmd_stats(args: argparse.Namespace) -> int:
    index = load_index(args.path)
    broken: list[str] = []
    if index is not None and not args.scan:
        rows = index.select(["source", "frames", "duration", "caption_length", "cuts", "motion"]).to_pylist()
        origin = "_index.parquet"
    else:
        shards = list_shards(args.path)
        with _bar(len(shards), "reading samples") as bar:
            rows, broken = rows_from_scan(shards, progress=lambda _s: bar.update())
        origin = "shard scan"
    out = stats(rows, load_rejects(args.path))
    out["from"] = origin
    if index is not None:
        out.update(sidecar_stats(args.path, index))
    if broken:
        out["broken_shards"] = broken
    if args.json:
        print(json.dumps(out, indent=2))
        return 0
    print(f"{out['samples']} samples (from {origin})\n")
    print(format_table([{"source": k, "samples": v} for k, v in out["by_source"].items()], ["source", "samples"]))
    print()
    names = ("duration_s", "frames", "caption_chars", "motion", "cuts", "aesthetic", "clip_score")
    dist = [dict(name=n, **out[n]) for n in names if n in out]
    print(format_table(dist, ["name", "count", "mean", "min", "p5", "p50", "p95", "max"]))
    if "duplicates" in out:
        print(f'\n{out["duplicates"]} duplicates listed in _dups.parquet (train with where: "not is_dup")')
    for note in out.get("sidecar_problems", []):
        print(f"warning: {render.terminal_text(note)}", file=sys.stderr)
    if "rejects" in out:
        print(f"\n{out['rejects']} rejects")
        if out["rejects_by_reason"]:
            rr = [{"stage/reason": k, "count": v} for k, v in out["rejects_by_reason"].items()]
            print(format_table(rr, ["stage/reason", "count"]))
    for b in broken:
        print(f"broken shard: {render.terminal_text(b)}", file=sys.stderr)
    return 0


def sidecar_stats(path: str, index: Any) -> dict[str, Any]:
    """Distributions of the scores and the duplicate count, from the set's sidecar tables where they exist."""
    from shards.sidecars import DUPS, SCORES, load_sidecar

    out: dict[str, Any] = {}
    problems = []
    for name in (DUPS, SCORES):
        try:
            table = load_sidecar(path, name, index)
        except ValueError as e:  # stale: said, not applied
            problems.append(str(e))
            continue
        if table is None:
            continue
        if name == DUPS:
            out["duplicates"] = table.num_rows
        else:
            for c in ("aesthetic", "clip_score"):
                out[c] = describe(table.column(c).to_pylist())
    if problems:
        out["sidecar_problems"] = problems
    return out


def cmd_show(args: argparse.Namespace) -> int:
    return show_sample(args.path, args.key, args.frames, args.out)


def show_sample(path: str, key: str, frames: int = 8, out: str | None = None) -> int:
    """``vidrd shards show``: print a sample's metadata and save its contact sheet (``out``, default from the key);
    the exit status."""
    text = render.terminal_text
    found = find_sample(path, key)
    if found is None:
        print(f"error: no sample with key {text(repr(key))} under {text(path)}", file=sys.stderr)
        return 1
    url, members = found
    meta = sample_meta(members)
    caption = members.get("txt", b"").decode("utf-8", "replace")
    print(f"key:     {text(key)}\nshard:   {text(url)}\ncaption: {text(caption)}\nmetadata:")
    shown = dict(meta)
    tl = meta.get("timeline")
    tl_problem = None if tl is None else render.timeline_problem(tl)
    if tl is not None and tl_problem is None:  # hundreds of numbers: drawn on the sheet instead
        shown["timeline"] = f"<{len(tl['times'])} sampled frames; drawn on the contact sheet>"
    # Line by line: the JSON's own newlines are layout; any inside a value are already escaped by json.
    print("\n".join(text(line) for line in json.dumps(shown, indent=2, ensure_ascii=False).split("\n")))
    if "mp4" not in members:
        print("error: sample has no .mp4", file=sys.stderr)
        return 1
    try:
        _, info = decode_frames(members["mp4"], indices=[])
        idx = render.even_indices(info.frames, frames)
        shown_frames, _ = decode_frames(members["mp4"], indices=idx)
    except VideoDecodeError as e:
        print(f"error: video does not decode: {text(e)}", file=sys.stderr)
        return 1
    sheet = render.contact_sheet(
        shown_frames,
        idx,
        info.fps,
        f"{key}  ({info.frames} frames, {info.width}x{info.height}, {info.fps:.2f} fps)",
        caption,
    )
    if tl_problem is not None:
        print(f"warning: timeline metadata not drawn: {tl_problem}", file=sys.stderr)
    elif tl is not None and tl["times"]:  # a long-videos segment: draw where it came from
        start, end = number(meta.get("start")), number(meta.get("end"))
        current = (start, end) if start is not None and end is not None else None
        sheet = render.stack([sheet, render.timeline(tl, current, width=max(sheet.width, 640))])
        kept = sum(1 for k in tl["keep"] if k)
        print(f"timeline: {kept} of {len(tl['keep'])} sampled frames kept, {len(tl.get('segments', []))} segments")
    # Default name from the key with only [A-Za-z0-9_-] kept, short: a key is data, not a path.
    out = out or f"{re.sub(r'[^A-Za-z0-9_-]', '_', key)[:100]}.png"
    render.save_image(sheet, out)
    print(f"contact sheet: {text(out)}")
    return 0


def cmd_verify(args: argparse.Namespace) -> int:
    shards = list_shards(args.path)
    fs, p = url_to_fs(args.path)
    with _bar(len(shards), "verifying") as bar:
        report = verify(
            shards, args.path, decode=not args.no_decode, whole_dir=fs.isdir(p), progress=lambda _s: bar.update()
        )
    if args.json:
        print(json.dumps(report.to_dict(), indent=2))
    else:
        print(f"{report.shards} shards, {report.samples} samples, {report.decoded} decoded")
        if report.ok:
            print("OK: every check passed")
        else:
            print(f"FAILED: {len(report.problems)} problems")
            print(format_table(report.problems, ["shard", "key", "problem", "detail"]))
    return 0 if report.ok else 1


def signal_line(meta: dict[str, Any], extra: dict[str, Any] | None = None) -> str:
    """``source · frames · fps`` and whichever curation signals the sample has."""
    fps = number(meta.get("fps"))
    parts = [str(meta.get("source", "?")), f"{meta.get('frames', '?')} frames", f"{fps:.4g} fps" if fps else "fps ?"]
    motion = number(meta.get("motion"))
    if motion is not None:
        parts.append(f"motion {motion:.3g}")
    if cut_count(meta) is not None:
        parts.append(f"cuts {cut_count(meta)}")
    for k, v in (extra or {}).items():
        parts.append(f"{k} {v}")
    return " · ".join(parts)


def _entry(args: argparse.Namespace, key: str, members: dict[str, Any], n: int, extra: dict | None = None) -> str:
    meta = sample_meta(members)
    caption = members.get("txt", b"").decode("utf-8", "replace")
    thumb, err = None, None
    try:
        total = int(number(meta.get("frames")) or 0)
        if total < 1:  # no frame count in .json: count by decoding (the one case that decodes twice)
            total = decode_frames(members.get("mp4", b""), indices=[])[1].frames
        frames, _ = decode_frames(members["mp4"], indices=render.even_indices(total, args.frames))
        thumb = render.thumb_name(key, n)
        render.save_image(render.strip(frames), join(args.out, thumb), "JPEG")
    except (VideoDecodeError, KeyError) as e:
        err = f"video does not decode: {e}"
    return render.gallery_entry(key, thumb, caption, signal_line(meta, extra), err)


def _write_page(out: str, page: str) -> str:
    path = join(out, "index.html")
    data = page.encode("utf-8")
    write_atomic(path, lambda f: f.write(data))  # a link planted at index.html is replaced, not written through
    return path


def cmd_gallery(args: argparse.Namespace) -> int:
    if args.where or args.sort:
        return filtered_gallery(args)
    shards = list_shards(args.path)
    parts: list[str] = []
    n = 0
    with _bar(len(shards), "rendering") as bar:
        for url in shards:
            scan = scan_shard(url, load=True)
            if scan.error:
                parts.append(render.gallery_entry(posixpath.basename(url), None, "", "shard", scan.error))
            for key, members in scan.samples.items():
                if n >= args.limit:
                    break
                n += 1
                parts.append(_entry(args, key, members, n))
            bar.update()
    page = render.gallery_head(f"shards: {args.path}", f"{n} samples from {len(shards)} shards")
    path = _write_page(args.out, page + "".join(parts) + "</body></html>\n")
    print(f"gallery: {path} ({n} samples)")
    return 0


def filtered_gallery(args: argparse.Namespace) -> int:
    """The gallery of what ``--where`` keeps and drops, in ``--sort`` order, from the set's index."""
    import pyarrow.compute as pc

    from shards.filters import FilterError, filter_index
    from shards.sidecars import named, with_derived_columns

    index = load_index(args.path)
    if index is None:
        print(f"error: {args.path}: --where and --sort need the set's _index.parquet", file=sys.stderr)
        return 2
    try:
        derived = sorted({*named(args.where), *named(args.sort)})
        if derived:
            index = with_derived_columns(args.path, index, derived)
        kept = filter_index(index, args.where)
        if args.sort and args.sort not in index.column_names:
            raise FilterError(f"--sort {args.sort!r}: no such index column (columns: {', '.join(index.column_names)})")
    except (FilterError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    dropped = index.filter(pc.invert(pc.is_in(index.column("key"), value_set=kept.column("key"))))
    order = [(args.sort, "descending" if args.desc else "ascending")] if args.sort else [("key", "ascending")]
    sections = [(name, t.sort_by(order).slice(0, args.limit)) for name, t in (("kept", kept), ("dropped", dropped))]
    if not args.where:
        sections = sections[:1]
    wanted: dict[str, set[str]] = {}
    for _, t in sections:
        for key, shard in zip(t.column("key").to_pylist(), t.column("shard").to_pylist(), strict=True):
            wanted.setdefault(shard, set()).add(key)
    urls = {posixpath.basename(u): u for u in list_shards(args.path)}
    members: dict[str, dict[str, Any]] = {}
    with _bar(len(wanted), "reading samples") as bar:
        for shard, keys in wanted.items():
            if shard in urls:
                scan = scan_shard(urls[shard], load=True)
                members.update({k: m for k, m in scan.samples.items() if k in keys})
            bar.update()
    shown = list(dict.fromkeys(c for c in (args.sort, *derived) if c and c != "key"))  # values beside each entry
    html_parts, n = [], 0
    counts = {"kept": kept.num_rows, "dropped": dropped.num_rows}
    with _bar(sum(t.num_rows for _, t in sections), "rendering") as bar:
        for name, t in sections:
            label = f"{name} by the filter" if args.where else "samples"
            html_parts.append(f'<h2 id="{name}">{label} ({counts[name]}; {t.num_rows} shown)</h2>\n')
            for row in t.to_pylist():
                n += 1
                extra = {c: row.get(c) for c in shown}
                m = members.get(row["key"])
                if m is None:
                    html_parts.append(render.gallery_entry(row["key"], None, "", "", f"not found in {row['shard']}"))
                else:
                    html_parts.append(_entry(args, row["key"], m, n, extra))
                bar.update()
    summary = (
        f"{index.num_rows} samples; where {args.where or '(none)'}: {counts['kept']} kept, {counts['dropped']} dropped"
    )
    if args.sort:
        summary += f"; sorted by {args.sort}" + (" (largest first)" if args.desc else "")
    page = render.gallery_head(f"shards: {args.path}", summary)
    path = _write_page(args.out, page + "".join(html_parts) + "</body></html>\n")
    print(f"gallery: {path} ({counts['kept']} kept, {counts['dropped']} dropped; {n} shown)")
    return 0


def run(args: argparse.Namespace) -> int:
    """Dispatch with clear messages for missing paths."""
    try:
        return args.func(args)
    except (ShardPathError, SchemaError) as e:  # SchemaError: an _index/_rejects.parquet that cannot be read
        print(f"error: {e}", file=sys.stderr)
        return 2


__all__ = ["cmd_gallery", "cmd_ls", "cmd_show", "cmd_stats", "cmd_verify", "describe", "run", "shard_dir"]
