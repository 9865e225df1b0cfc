"""Thread counts from the cores this process may use: affinity, cgroup quota, OMP_NUM_THREADS."""
from __future__ import annotations

import os

import pytest

from engine.compute.threads import available_cores, cgroup_quota, plan_threads


def _cgroup_v2(root, text):
    root.mkdir(exist_ok=True)
    (root / "cpu.max").write_text(text)
    return root


def test_cgroup_v2_quota_is_read(tmp_path):
    assert cgroup_quota(_cgroup_v2(tmp_path / "a", "150000 100000\n")) == 1.5
    assert cgroup_quota(_cgroup_v2(tmp_path / "b", "max 100000\n")) is None
    assert cgroup_quota(tmp_path / "none") is None


def test_cgroup_v1_quota_is_read(tmp_path):
    cpu = tmp_path / "cpu"
    cpu.mkdir()
    (cpu / "cpu.cfs_quota_us").write_text("200000\n")
    (cpu / "cpu.cfs_period_us").write_text("100000\n")
    assert cgroup_quota(tmp_path) == 2.0
    (cpu / "cpu.cfs_quota_us").write_text("-1\n")
    assert cgroup_quota(tmp_path) is None


def test_quota_below_affinity_limits_the_cores(tmp_path, monkeypatch):
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(16)))
    cores, why = available_cores(_cgroup_v2(tmp_path / "q", "250000 100000"))
    assert cores == 3 and "cgroup quota 2.5" in why
    cores, why = available_cores(tmp_path / "unlimited")
    assert cores == 16 and "affinity 16" in why


def test_plan_sizes_pools_and_honours_omp(tmp_path, monkeypatch):
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(16)))
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    plan = plan_threads(root=tmp_path)
    assert (plan.cores, plan.intra_op, plan.reader, plan.writer) == (16, 16, 4, 4)
    assert plan.describe().startswith("threads: 16 usable core(s)")
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    plan = plan_threads(cores=2)
    assert (plan.intra_op, plan.reader, plan.writer) == (3, 1, 1)
    assert "OMP_NUM_THREADS=3" in plan.describe()


@pytest.mark.parametrize("omp", ["", "zero", "0"])
def test_unusable_omp_values_are_ignored(monkeypatch, omp):
    monkeypatch.setenv("OMP_NUM_THREADS", omp)
    assert plan_threads(cores=4).intra_op == 4
