"""Thread counts that fit the cores this process may actually use.

``os.cpu_count()`` (and torch's and onnxruntime's defaults) count the machine's cores, not the
ones a container or a task set leaves the process: on a 64-core host with a 2-CPU cgroup quota
64 intra-op threads fight over 2 CPUs.  The usable count is the smallest of the CPU affinity
(``os.sched_getaffinity``) and the cgroup quota (v2 ``cpu.max``, v1 ``cpu.cfs_quota_us``).
``OMP_NUM_THREADS``, when set, is the user's explicit choice for the network and wins.
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Tuple

from .backend import torch_module

CGROUP = Path("/sys/fs/cgroup")


@dataclass(frozen=True)
class ThreadPlan:
    """Threads for one job: the network's intra-op pool, the window reader and the writer."""

    cores: int        # usable cores
    source: str       # what limited them (affinity, cgroup quota, OMP_NUM_THREADS)
    intra_op: int     # torch / onnxruntime intra-op threads
    reader: int       # GDAL decoding threads of the window reader
    writer: int       # GDAL compression threads of each output writer

    def describe(self) -> str:
        """One log line: what was found and what each part gets."""
        return (f"threads: {self.cores} usable core(s) ({self.source}); network "
                f"{self.intra_op} intra-op, reader {self.reader}, writer {self.writer}")


def cgroup_quota(root: Path = CGROUP) -> Optional[float]:
    """CPUs allowed by the cgroup CPU quota (v2 ``cpu.max`` or v1 CFS), None when unlimited."""
    for quota_file, period_file in ((root / "cpu.max", None),
                                    (root / "cpu" / "cpu.cfs_quota_us",
                                     root / "cpu" / "cpu.cfs_period_us"),
                                    (root / "cpu,cpuacct" / "cpu.cfs_quota_us",
                                     root / "cpu,cpuacct" / "cpu.cfs_period_us")):
        try:
            text = quota_file.read_text().split()
            if period_file is not None:
                text = text[:1] + period_file.read_text().split()[:1]
        except OSError:
            continue
        if len(text) < 2 or text[0] in ("max", "-1"):
            return None
        try:
            quota, period = float(text[0]), float(text[1])
        except ValueError:
            return None
        return quota / period if quota > 0 and period > 0 else None
    return None


def available_cores(root: Path = CGROUP) -> Tuple[int, str]:
    """The cores this process can use and a few words on what set the number."""
    try:
        affinity = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not Linux
        affinity = os.cpu_count() or 1
    quota = cgroup_quota(root)
    if quota is not None and math.ceil(quota) < affinity:
        return max(1, math.ceil(quota)), f"cgroup quota {quota:g} CPU of {affinity} in affinity"
    return max(1, affinity), f"CPU affinity {affinity}" + ("" if quota is None else
                                                          f", cgroup quota {quota:g}")


def plan_threads(cores: Optional[int] = None, root: Path = CGROUP) -> ThreadPlan:
    """Size the thread pools from the usable cores (``cores`` forces a count).

    The network gets every core: reading and writing mostly wait on the disk and overlap with
    it.  GDAL's decoding/compression threads grow with the cores, a quarter of them up to 4.
    """
    source = "given"
    if cores is None:
        cores, source = available_cores(root)
    omp = os.environ.get("OMP_NUM_THREADS", "").strip()
    intra = cores
    if omp.isdigit() and int(omp) > 0:
        intra = int(omp)
        source += f"; OMP_NUM_THREADS={omp} for the network"
    io = max(1, min(4, cores // 4))
    return ThreadPlan(cores, source, intra, io, io)


def apply_to_torch(plan: ThreadPlan) -> None:
    """Give torch's intra-op pool ``plan.intra_op`` threads (when torch is installed)."""
    torch = torch_module()
    if torch is not None and torch.get_num_threads() != plan.intra_op:
        torch.set_num_threads(plan.intra_op)
