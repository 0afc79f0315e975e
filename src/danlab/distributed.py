"""One training over several local processes (`danlab train --workers N`): the same code path
as `torchrun --nproc-per-node N -m danlab train ...` (gloo on CPU, NCCL on GPUs), started
here with torch.multiprocessing so a 2-core laptop can use both cores without a launcher."""

from __future__ import annotations

import os
import socket

import torch

from danlab.errors import check_int_at_least


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _worker(rank: int, world: int, port: int, threads: int, fn, args, kwargs):
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank),
                      LOCAL_RANK=str(rank), WORLD_SIZE=str(world))
    torch.set_num_threads(threads)
    import torch.distributed as dist

    try:
        fn(*args, **kwargs)
    finally:
        if dist.is_initialized():  # train closes its group; this is for an error before that
            dist.destroy_process_group()


def launch(fn, workers: int, *args, threads: int | None = None, **kwargs) -> None:
    """Run fn(*args, **kwargs) in `workers` processes forming one data-parallel group; each
    process gets `threads` torch threads (default: the cores shared out, at least one)."""
    check_int_at_least("workers", workers, 1)
    threads = threads or max(1, (os.cpu_count() or 1) // workers)
    torch.multiprocessing.spawn(_worker, args=(workers, free_port(), threads, fn, args, kwargs),
                                nprocs=workers, join=True)
