"""The job layer's output guard: outputs never overwrite inputs or each other, a lock per output,
and the temporary files of killed runs removed by the next run."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from engine.jobs import (OutputError, atomic_output, check_outputs, ctrl_c_held, lock_path,
                         output_lock, partial_prefix, remove_stale_partials)

ROOT = Path(__file__).resolve().parents[2]


def test_an_output_that_is_an_input_is_refused_also_through_a_symlink(tmp_path):
    src = tmp_path / "in.tif"
    src.write_bytes(b"data")
    link = tmp_path / "link.tif"
    link.symlink_to(src)
    with pytest.raises(OutputError, match="which is an input"):
        check_outputs({"--output": src}, [src])
    with pytest.raises(OutputError, match=r"--output would write .*link.tif, which is an input \(.*in.tif\)"):
        check_outputs({"--output": link}, [src])
    with pytest.raises(OutputError, match="which is an input"):
        check_outputs({"--output": tmp_path / "sub" / ".." / "in.tif"}, [src])
    assert src.read_bytes() == b"data"


def test_two_outputs_naming_one_file_are_refused(tmp_path):
    with pytest.raises(OutputError, match="--output and --probabilities would both write"):
        check_outputs({"--output": tmp_path / "a.tif", "--probabilities": tmp_path / "a.tif"})
    got = check_outputs({"--output": tmp_path / "a.tif", "--probabilities": None,
                         "--polygons": tmp_path / "a.gpkg"}, [None, tmp_path / "b.tif"])
    assert got == {"--output": tmp_path / "a.tif", "--polygons": tmp_path / "a.gpkg"}


def test_a_missing_output_folder_is_a_sentence(tmp_path):
    with pytest.raises(OutputError, match="does not exist"):
        check_outputs({"--output": tmp_path / "nope" / "a.tif"})


def test_a_second_writer_of_the_same_output_is_refused(tmp_path):
    out = tmp_path / "a.tif"
    with output_lock(out):
        with pytest.raises(OutputError, match=rf"another run \(process {os.getpid()}\) is writing"):
            check_outputs({"--output": out})
        with pytest.raises(OutputError, match="another run"):
            with atomic_output(out):
                pass
    assert not lock_path(out).exists()
    with atomic_output(out) as tmp:  # free again
        tmp.write_text("x")
    assert out.read_text() == "x" and sorted(p.name for p in tmp_path.iterdir()) == ["a.tif"]


def _killed_writer(out: Path) -> None:
    """A process that starts writing ``out`` and is killed with SIGKILL half-way."""
    code = textwrap.dedent(f"""
        import sys, time
        sys.path.insert(0, {str(ROOT)!r})
        from engine.jobs import atomic_output
        with atomic_output({str(out)!r}) as tmp:
            tmp.write_text("half")
            print("writing", flush=True)
            time.sleep(60)
    """)
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "writing"
    proc.send_signal(signal.SIGKILL)
    proc.wait()


def test_a_killed_run_leaves_nothing_that_blocks_and_its_leftovers_are_removed(tmp_path):
    out = tmp_path / "a.tif"
    _killed_writer(out)
    left = sorted(p.name for p in tmp_path.iterdir())
    assert any(name.endswith(".partial") for name in left)  # SIGKILL cannot be cleaned up after
    check_outputs({"--output": out})  # the dead run's lock does not hold
    with atomic_output(out) as tmp:
        tmp.write_text("whole")
    assert out.read_text() == "whole"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.tif"]


def test_partials_of_a_live_process_or_another_output_are_kept(tmp_path):
    out = tmp_path / "a.tif"
    mine = tmp_path / f"{partial_prefix(out)}xyz.partial"
    other = tmp_path / f".b.tif.{2 ** 22 + 7}.xyz.partial"
    dead = tmp_path / f".a.tif.{2 ** 22 + 7}.xyz.partial"
    dead_sidecar = tmp_path / f".a.tif.{2 ** 22 + 7}.xyz.partial.aux.xml"
    for p in (mine, other, dead, dead_sidecar):
        p.write_text("")
    assert sorted(remove_stale_partials(out)) == sorted([dead, dead_sidecar])
    assert mine.exists() and other.exists()


def test_temporary_names_carry_the_process_id(tmp_path):
    with atomic_output(tmp_path / "a.tif") as tmp:
        assert tmp.name.startswith(f".a.tif.{os.getpid()}.") and tmp.name.endswith(".partial")
        assert lock_path(tmp_path / "a.tif").read_text() == str(os.getpid())


def test_a_job_holds_its_outputs_from_the_guard_to_its_end(tmp_path):
    from engine.jobs import job_outputs
    out = tmp_path / "a.tif"
    seen = {}

    @job_outputs
    def job():
        check_outputs({"--output": out})
        seen["locked"] = lock_path(out).exists()
        other = subprocess.run(  # another process, same path
            [sys.executable, "-c", f"import sys; sys.path.insert(0, {str(ROOT)!r})\n"
                                   f"from engine.jobs import check_outputs\n"
                                   f"check_outputs({{'--output': {str(out)!r}}})"],
            capture_output=True, text=True)
        assert other.returncode == 1 and f"another run (process {os.getpid()}) is writing" \
            in other.stderr
        with atomic_output(out) as tmp:  # the job's own writer keeps the lock
            tmp.write_text("x")
        return "done"
    assert job() == "done" and seen["locked"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.tif"]


def test_a_ctrl_c_held_back_arrives_once_the_block_ends():
    steps = []
    with pytest.raises(KeyboardInterrupt):
        with ctrl_c_held():
            signal.raise_signal(signal.SIGINT)
            steps.append("the block went on")
    assert steps == ["the block went on"]
