"""Inference sharded over the ranks of ``torchrun`` (many GPUs, nodes or CPU processes).

Each rank owns a contiguous band of window rows and streams only those (plus the window rows
before its band whose windows reach into it, computed by both neighbours), so every output pixel
row it keeps has received exactly the windows, in exactly the order, that a single process adds:
the result is bit-for-bit the single-process output.  Rank 0 writes its band straight into the
final file; every other rank writes its band to a hidden part file beside the output.  When all
ranks have finished, rank 0 appends the parts in rank order and renames the final file into
place: memory stays one band strip per writer, whatever the raster's area, and no rank ever
holds another rank's rows.  A rank that fails makes every rank fail with its message, and no
output is left behind.

The ranks exchange only a status and a few counts (class areas), over a gloo process group even
on GPUs: no tensor crosses devices, so NCCL is not needed.  Several nodes need the output
folder on a shared file system (the part files are read by rank 0).
"""
from __future__ import annotations

import contextlib
import os
import sys
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Sequence

import numpy as np
import rasterio
from rasterio.windows import Window

from ..io.cog import stream_path, writer_path
from ..io.writer import StripWriter
from ..jobs import EngineError, atomic_output
from .tiling import Grid

PART_ROWS = 256  # rows per copy when rank 0 appends a part (bounded memory)


class ShardError(EngineError):
    """Another rank of a sharded run failed; the message is that rank's."""


def world() -> tuple[int, int]:
    """(rank, world size) from torchrun's environment (0, 1 without it)."""
    return int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))


@dataclass
class Shard:
    """One rank's part of a grid: window rows ``first .. end`` are computed, rows ``start ..
    end`` are owned; their output pixel rows are ``y0 .. y1``."""

    grid: Grid
    rank: int
    size: int
    first: int
    start: int
    end: int
    y0: int
    y1: int
    streams: List[Path] = field(default_factory=list)  # the files the writers stream, in order

    @property
    def rows(self) -> range:
        """Window rows this rank streams through the network."""
        return range(self.first, self.end) if self.end > self.start else range(0)

    def keep(self, on_rows):
        """``on_rows`` limited to the owned pixel rows, shifted to the rank's own part file
        (rank 0's band starts at row 0, so its rows stay where they are)."""
        def on_own_rows(y: int, rows: List[np.ndarray]) -> None:
            if y >= self.y0:
                on_rows(y - self.y0, rows)
        return on_own_rows


def plan(grid: Grid, rank: int, size: int) -> Shard:
    """Rank ``rank``'s band of ``grid``'s window rows (balanced; empty when ranks outnumber
    rows)."""
    ys, tile = grid.ys, grid.tile
    n = len(ys)
    start, end = rank * n // size, (rank + 1) * n // size
    y0 = ys[start] if start < n else grid.height
    y1 = ys[end] if end < n else grid.height
    # window rows before the band whose windows cover its first pixel row (stride may be short)
    first = next((i for i in range(start) if ys[i] + tile > y0), start)
    return Shard(grid, rank, size, first, start, end, y0, y1)


_LOCAL = threading.local()  # set while a rank runs whole files of its own (engine.inference.batch)


def current(grid: Grid) -> Optional[Shard]:
    """This process's shard under torchrun (joining the process group), None otherwise."""
    rank, size = world()
    if size <= 1 or getattr(_LOCAL, "on", False):
        return None
    _join()
    return plan(grid, rank, size)


def _join() -> None:
    import torch.distributed as dist
    if not dist.is_initialized():
        dist.init_process_group("gloo")


@contextlib.contextmanager
def local() -> Iterator[None]:
    """Within the body each rank runs unsharded (it handles whole inputs of its own)."""
    _LOCAL.on = True
    try:
        yield
    finally:
        _LOCAL.on = False


def gather(value: Any) -> List[Any]:
    """Every rank's ``value``, in rank order (``[value]`` without torchrun)."""
    if world()[1] <= 1:
        return [value]
    _join()
    import torch.distributed as dist
    gathered: List[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(gathered, value)
    return gathered


def leave() -> None:
    """Leave the process group together (each rank's gloo pairs close only when every rank is
    done with them; exiting without this can abort a rank still talking)."""
    if "torch.distributed" not in sys.modules:
        return
    import torch.distributed as dist
    if dist.is_initialized():
        with contextlib.suppress(RuntimeError):  # a failed rank already left: nothing to wait for
            dist.barrier()
        dist.destroy_process_group()


def rank_device(device: Any) -> Any:
    """Under torchrun on GPUs each rank takes the GPU of its local rank."""
    if world()[1] > 1 and getattr(device, "type", "cpu") == "cuda" and device.index is None:
        import torch
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
        torch.cuda.set_device(device)
    return device


def part_path(output: str | Path, rank: int) -> Path:
    """Where rank ``rank`` (> 0) writes its band of ``output``."""
    out = Path(output)
    return out.with_name(f".{out.name}.rank{rank}.part.tif")


def open_writer(shard: Optional[Shard], stack: contextlib.ExitStack, output: str | Path,
                output_format: str, resampling: str, profile: Dict[str, Any],
                **options: Any) -> StripWriter:
    """The writer for ``output`` in ``output_format``: on rank 0 or without torchrun the final
    file (atomic; for ``cog`` a hidden GeoTIFF converted into it when the stack closes), else
    the rank's part file holding its band only."""
    if shard is not None:
        shard.streams.append(stream_path(output, output_format))
    if shard is None or shard.rank == 0:
        target = writer_path(stack, output, output_format, resampling)
        return StripWriter(stack.enter_context(atomic_output(target)), profile, **options)
    band = dict(profile, height=max(shard.y1 - shard.y0, 1),
                transform=profile["transform"] * rasterio.Affine.translation(0, shard.y0))
    return StripWriter(part_path(shard.streams[-1], shard.rank), band, **options)


def _remove_parts(shard: Shard, ranks: Sequence[int]) -> None:
    for rank in ranks:
        for stream in shard.streams:
            part_path(stream, rank).unlink(missing_ok=True)


def _exchange(message: Optional[str], counts: Sequence[np.ndarray]) -> List[tuple]:
    return gather((message, [np.asarray(c) for c in counts]))


@contextlib.contextmanager
def collective(shard: Optional[Shard], writers: Sequence[StripWriter],
               counts: Sequence[np.ndarray] = ()) -> Iterator[None]:
    """Run the body on every rank, then agree: any rank's failure fails them all (no output);
    on success the ranks' ``counts`` are summed in place and rank 0 appends the parts to its
    ``writers`` (opened by :func:`open_writer`, which still hold the final files).

    Without torchrun it only closes the writers (or aborts them on failure).
    """
    try:
        yield
        if shard is not None and shard.rank:
            for w in writers:
                w.close()
    except BaseException as exc:
        for w in writers:
            w.abort()
        if shard is not None:
            _remove_parts(shard, [shard.rank] if shard.rank else [])
            _exchange(f"rank {shard.rank}: {exc}", counts)
        raise
    if shard is None:
        for w in writers:
            w.close()
        return
    gathered = _exchange(None, counts)
    failed = [m for m, _ in gathered if m]
    if failed:
        if shard.rank:
            _remove_parts(shard, [shard.rank])
        else:
            for w in writers:
                w.abort()
        raise ShardError(f"the sharded run failed on {failed[0]}")
    for i, c in enumerate(counts):
        c[...] = sum(g[1][i] for g in gathered)
    if shard.rank == 0:
        _append_parts(shard, writers)


def _append_parts(shard: Shard, writers: Sequence[StripWriter]) -> None:
    """Rank 0: stream every other rank's part into the final files, then close them."""
    try:
        for rank in range(1, shard.size):
            band = plan(shard.grid, rank, shard.size)
            for writer, stream in zip(writers, shard.streams):
                if band.y1 > band.y0:
                    with rasterio.open(part_path(stream, rank)) as src:
                        for y in range(0, src.height, PART_ROWS):
                            h = min(PART_ROWS, src.height - y)
                            writer.put(band.y0 + y, src.read(window=Window(0, y, src.width, h)))
        for w in writers:
            w.close()
    except BaseException:
        for w in writers:
            w.abort()
        raise
    finally:
        _remove_parts(shard, range(1, shard.size))
