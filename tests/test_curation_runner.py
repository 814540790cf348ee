"""The stage runner on a real (local) Ray: counts add up, re-runs resume, crashes lose nothing."""

import os
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import ray

from curation.runner import Faults, RunMismatchError, RunnerConfig, run_stage
from tests.helpers import index_keys

REPO = Path(__file__).resolve().parents[1]
STAGE_CFG = {"short_side": 32}


@pytest.fixture(scope="module")
def local_ray():
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


def test_counts_add_up_and_rerun_resumes(local_ray, corpus, tmp_path):
    rows, manifest = corpus
    out = tmp_path / "out"
    runner = RunnerConfig(rows_per_partition=4)
    s = run_stage("captioned", str(manifest), str(out), STAGE_CFG, runner, progress=False)
    assert s.ok and s.inputs == len(rows) and s.partitions == (len(rows) + 3) // 4 and s.skipped == 0
    want_ok = sorted(r["id"] for r in rows if r["expect"] == "ok")
    index = pq.read_table(out / "_index.parquet").to_pylist()
    assert sorted(r["source_id"] for r in index) == want_ok
    rejects = {r["input_id"]: r["reason"] for r in pq.read_table(out / "_rejects.parquet").to_pylist()}
    assert rejects == {r["id"]: r["expect"] for r in rows if r["expect"] != "ok"}
    first = index_keys(out)
    again = run_stage("captioned", str(manifest), str(out), STAGE_CFG, runner, progress=False)
    assert again.skipped == again.partitions and index_keys(out) == first and again.ok
    with pytest.raises(RunMismatchError, match="another manifest or configuration"):
        run_stage("captioned", str(manifest), str(out), {"short_side": 64}, runner, progress=False)
    from vidrd.cli import main

    assert main(["shards", "verify", str(out)]) == 0


def test_a_worker_dying_mid_task_loses_and_duplicates_nothing(local_ray, corpus, tmp_path):
    _rows, manifest = corpus
    runner = RunnerConfig(rows_per_partition=4)
    clean = tmp_path / "clean"
    run_stage("captioned", str(manifest), str(clean), STAGE_CFG, runner, progress=False)
    crash = tmp_path / "markers"
    crash.mkdir()
    out = tmp_path / "crashy"
    s = run_stage("captioned", str(manifest), str(out), STAGE_CFG, runner, False, Faults(crash_once_dir=str(crash)))
    assert len(list(crash.iterdir())) == s.partitions  # every partition's first attempt died mid-way
    assert s.ok and index_keys(out) == index_keys(clean)
    assert not [p for p in os.listdir(out) if p.endswith(".tmp")]


def test_an_input_that_kills_every_worker_is_recorded_not_fatal(local_ray, corpus, tmp_path):
    rows, manifest = corpus
    out = tmp_path / "poison"
    s = run_stage("captioned", str(manifest), str(out), STAGE_CFG, RunnerConfig(rows_per_partition=4, max_retries=1),
                  progress=False, faults=Faults(crash_on_id="good"))  # fmt: skip
    assert s.ok and s.inputs == len(rows)
    rejects = {r["input_id"]: r for r in pq.read_table(out / "_rejects.parquet").to_pylist()}
    assert rejects["good"]["reason"] == "worker_crashed"
    want = sorted(r["id"] for r in rows if r["expect"] == "ok" and r["id"] != "good")
    assert sorted(pq.read_table(out / "_index.parquet").column("source_id").to_pylist()) == want


def test_an_out_that_is_a_file_or_holds_a_garbage_run_record_is_refused(corpus, tmp_path):
    """Checked before any Ray work: the error names the file."""
    _, manifest = corpus
    a_file = tmp_path / "out.txt"
    a_file.write_text("x")
    with pytest.raises(RunMismatchError, match="is a file; give a folder"):
        run_stage("captioned", str(manifest), str(a_file), STAGE_CFG, progress=False)
    for garbage in ("{not json", "[1, 2]"):
        out = tmp_path / f"out{len(garbage)}"
        out.mkdir()
        (out / "_run.json").write_text(garbage)
        with pytest.raises(RunMismatchError, match=r"_run\.json is not this command's run record"):
            run_stage("captioned", str(manifest), str(out), STAGE_CFG, progress=False)


def test_a_rerun_repairs_deleted_truncated_and_altered_shards(local_ray, corpus, tmp_path):
    from vidrd.cli import main

    _, manifest = corpus
    out = tmp_path / "out"
    runner = RunnerConfig(rows_per_partition=4)
    first = run_stage("captioned", str(manifest), str(out), STAGE_CFG, runner, progress=False)
    tars = sorted(out.glob("*.tar"))
    assert len(tars) >= 3, f"{first.line()}; in {out}: {sorted(p.name for p in out.iterdir())}"
    original = {t.name: t.read_bytes() for t in tars}
    tars[0].unlink()
    tars[1].write_bytes(original[tars[1].name][:-700])
    flipped = bytearray(original[tars[2].name])
    flipped[len(flipped) // 2] ^= 0xFF
    tars[2].write_bytes(bytes(flipped))
    again = run_stage("captioned", str(manifest), str(out), STAGE_CFG, runner, progress=False)
    assert again.ok and again.repaired == 3 and "3 damaged and redone" in again.line()
    assert {t.name: t.read_bytes() for t in sorted(out.glob("*.tar"))} == original  # rebuilt byte for byte
    assert main(["shards", "verify", str(out)]) == 0
    quiet = run_stage("captioned", str(manifest), str(out), STAGE_CFG, runner, progress=False)
    assert quiet.repaired == 0 and quiet.skipped == quiet.partitions


def test_a_rerun_trusts_no_emptied_deleted_or_malformed_shard_record(local_ray, corpus, tmp_path):
    """Each part's shards are missing and its record no longer says so (emptied, deleted, replaced by a list or
    a folder): the part is redone, not reported complete with its samples still in the index."""
    from vidrd.cli import main

    _, manifest = corpus
    out = tmp_path / "out"
    runner = RunnerConfig(rows_per_partition=4)
    first = run_stage("captioned", str(manifest), str(out), STAGE_CFG, runner, progress=False)
    original = {t.name: t.read_bytes() for t in out.glob("*.tar")}
    assert original, f"{first.line()}; in {out}: {sorted(p.name for p in out.iterdir())}"
    records = sorted((out / "_parts").glob("*.shards.json"))
    assert len(records) >= 4
    for record, damage in zip(records, ("{}", None, "[]", "dir"), strict=False):
        import json

        for name in json.loads(record.read_text()):
            (out / name).unlink()
        record.unlink()
        if damage == "dir":
            record.mkdir()
        elif damage is not None:
            record.write_text(damage)
    again = run_stage("captioned", str(manifest), str(out), STAGE_CFG, runner, progress=False)
    assert again.ok and again.repaired == 4
    assert {t.name: t.read_bytes() for t in out.glob("*.tar")} == original
    assert main(["shards", "verify", str(out)]) == 0


def test_a_second_run_into_the_same_out_is_refused_while_another_holds_it(corpus, tmp_path):
    """Refused at once, naming the holder, before any Ray work; free again the moment the holder dies; a link
    planted at the lock's name is refused, not followed."""
    import subprocess
    import sys

    from curation.output_lock import LOCK_FILE, OutputBusyError, exclusive_output

    _, manifest = corpus
    out = tmp_path / "out"
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys; from curation.output_lock import exclusive_output as x\n"
         f"with x({str(out)!r}):\n print('held', flush=True); sys.stdin.read()"],
        cwd=REPO, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(OutputBusyError, match=rf"being written by another run \(pid {holder.pid} on "):
            run_stage("captioned", str(manifest), str(out), STAGE_CFG, progress=False)
    finally:
        holder.kill()
        holder.wait()
    assert not list(out.glob("*.tar")) and not (out / "_run.json").exists()  # the refused run wrote nothing
    # The kernel released the dead holder's lock; a second holder in this process is refused too.
    with exclusive_output(str(out)), pytest.raises(OutputBusyError), exclusive_output(str(out)):
        pass
    victim = tmp_path / "victim"
    victim.write_text("precious")
    (out / LOCK_FILE).unlink()
    (out / LOCK_FILE).symlink_to(victim)
    with pytest.raises(OutputBusyError, match="is a symbolic link"):
        run_stage("captioned", str(manifest), str(out), STAGE_CFG, progress=False)
    assert victim.read_text() == "precious"


def test_curate_settings_are_checked_before_ray_starts(tmp_path, capsys, monkeypatch):
    """A wrong setting is one line naming it, exit 2, and no Ray cluster is started for it."""
    import ray as ray_module

    from vidrd.cli import main

    started = []
    monkeypatch.setattr(ray_module, "init", lambda *a, **k: started.append(1))
    cases = [
        ("stage:\n  preset: warp9\n", "preset='warp9'"),
        ("stage:\n  no_such_setting: 1\n", "unknown settings ['no_such_setting']"),
        ("runner:\n  max_shard_samples: 0\n", "runner.max_shard_samples must be an integer >= 1"),
        ("runner:\n  num_cpus_per_task: -1\n", "runner.num_cpus_per_task must be a number > 0"),
    ]
    for i, (text, message) in enumerate(cases):
        cfg = tmp_path / f"c{i}.yaml"
        cfg.write_text(text)
        args = ["curate", "captioned", "--manifest", str(tmp_path / "m.parquet"), "--out", str(tmp_path / "o"),
                "--config", str(cfg)]  # fmt: skip
        assert main(args) == 2
        assert message in capsys.readouterr().err
    assert not started and not (tmp_path / "o").exists()


def _deep_failure(n: int) -> None:
    raise ValueError("bad input " + "x" * n)


def test_an_unforeseen_exception_is_a_reject_with_its_type_message_and_place(tmp_path):
    """``internal_error`` rejects keep the exception's type, its message (cut once) and the file:line that raised it."""
    from curation.partition import Partition, StageSpec, write_partition
    from curation.stage import MAX_ERROR_MESSAGE, describe_error

    def produce(row, _k):
        _deep_failure(5 if row["id"] == "a" else 5000)

    rows = [{"id": i, "source": "webvid", "uri": f"/v/{i}.mp4"} for i in ("a", "b")]
    (tmp_path / "o").mkdir()
    written = write_partition(Partition(0, "p0", "webvid", str(tmp_path / "o"), rows, StageSpec("captioned")), produce)
    assert written["samples"] == 0 and written["rejects"] == 2
    rej = {r["input_id"]: r for r in pq.read_table(tmp_path / "o" / "_parts" / "p0.rejects.parquet").to_pylist()}
    line = _deep_failure.__code__.co_firstlineno + 1
    assert rej["a"]["reason"] == "internal_error"
    assert rej["a"]["message"] == f"ValueError: bad input xxxxx (at tests/test_curation_runner.py:{line})"
    long, where = rej["b"]["message"], f" (at tests/test_curation_runner.py:{line})"
    assert long.startswith("ValueError: bad input xxx") and long.endswith(f"…{where}")
    assert len(long.split(" (at ")[0]) == MAX_ERROR_MESSAGE
    assert describe_error(KeyError()) == "KeyError"  # never raised: no place; no message: the type alone


def test_a_cancelled_task_ends_its_worker_process(tmp_path):
    """Ray cancels a task with KeyboardInterrupt, possibly inside an import: the process must not serve more tasks
    with a half-imported library, so the task body ends it (exit 1, nothing after it runs)."""
    import subprocess
    import sys

    code = (
        "from curation.partition import ends_process_when_unusable\n"
        "@ends_process_when_unusable\n"
        "def task(x):\n"
        "    if x:\n"
        "        raise KeyboardInterrupt\n"
        "    return 'ran'\n"
        "print(task(0), flush=True)\n"
        "task(1)\n"
        "print('still alive', flush=True)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True)
    assert done.returncode == 1 and done.stdout.split() == ["ran"]


def test_a_worker_whose_libraries_do_not_import_is_replaced_not_a_reject_per_input(local_ray, corpus, tmp_path):
    rows, manifest = corpus
    runner = RunnerConfig(rows_per_partition=4, max_retries=2)
    clean = tmp_path / "clean"
    run_stage("captioned", str(manifest), str(clean), STAGE_CFG, runner, progress=False)
    markers = tmp_path / "markers"
    markers.mkdir()
    out = tmp_path / "once"
    s = run_stage("captioned", str(manifest), str(out), STAGE_CFG, runner, False,
                  Faults(missing_library_once_dir=str(markers)))  # fmt: skip
    assert (markers / "missing_library").exists()  # one task met the broken library and its process was replaced
    assert s.ok and index_keys(out) == index_keys(clean)
    assert "internal_error" not in s.reasons and s.rejects == sum(r["expect"] != "ok" for r in rows)


def test_a_library_missing_on_every_worker_stops_the_run_with_its_name_and_a_rerun_resumes(local_ray, corpus, tmp_path):
    from curation.stage import BrokenEnvironmentError

    _rows, manifest = corpus
    runner = RunnerConfig(rows_per_partition=4, max_retries=1)
    out = tmp_path / "broken"
    with pytest.raises(BrokenEnvironmentError, match="No module named 'vidrd_fault_missing_library'"):
        run_stage("captioned", str(manifest), str(out), STAGE_CFG, runner, False, Faults(missing_library=True))
    rejects = pq.read_table(out / "_rejects.parquet").to_pylist() if (out / "_rejects.parquet").exists() else []
    assert rejects == []  # not one input blamed for the environment
    s = run_stage("captioned", str(manifest), str(out), STAGE_CFG, runner, progress=False)
    clean = tmp_path / "clean"
    run_stage("captioned", str(manifest), str(clean), STAGE_CFG, runner, progress=False)
    assert s.ok and s.skipped == 0 and index_keys(out) == index_keys(clean)


def test_vidrd_curate_says_what_does_not_import_and_that_the_same_command_resumes(
    local_ray, corpus, tmp_path, monkeypatch, capsys
):
    import curation.runner
    from curation.stage import BrokenEnvironmentError
    from vidrd.cli import main

    def broken(*_args, **_kwargs):
        raise BrokenEnvironmentError("the worker's Python environment cannot run the stage: No module named 'av'")

    monkeypatch.setattr(curation.runner, "run_stage", broken)
    _rows, manifest = corpus
    code = main(["curate", "captioned", "--manifest", str(manifest), "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert code == 1 and "No module named 'av'" in err and "run the same command again" in err
