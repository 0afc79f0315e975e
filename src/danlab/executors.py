"""Where the runs of a sweep execute: existing engines, not a home-made scheduler.

* `local`: a process pool on this machine (one torch thread per worker; workers = cores);
* `inline`: this process, one run after the other (tests, small tunings);
* `ray`: Ray tasks on an existing cluster (`address`) or a local one, with CPUs and
  (fractional) GPUs per run, so several small trainings share one GPU;
* `slurm`: Slurm job arrays through submitit (partition, time, GPUs); `cluster="local"` runs
  submitit's local executor (no Slurm needed).

Every executor has `map(fn, args_list)`, yielding (index, result or exception) as runs finish.
"""

from __future__ import annotations

import os
import time
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait

from danlab.errors import DanlabError, check_choice, check_int_at_least

EXECUTORS = ("local", "inline", "ray", "slurm")


def _optional(module: str, extra: str):
    try:
        return __import__(module)
    except ImportError:
        raise DanlabError(f"executor {extra!r} needs {module}: pip install 'danlab[{extra}]'"
                          ) from None


class Inline:
    def __init__(self):
        self._running = 0

    def describe(self) -> str:
        return "this process"

    def running(self) -> int:
        return self._running

    def map(self, fn, args_list):
        import torch

        for i, args in enumerate(args_list):
            self._running = 1
            # one torch thread, as in every other executor's workers: a run's numbers do not
            # depend on the executor (multi-threaded reductions round differently)
            threads = torch.get_num_threads()
            torch.set_num_threads(1)
            try:
                outcome = fn(*args)
            except Exception as exc:  # noqa: BLE001 - a failed run is reported, not fatal
                outcome = exc
            finally:
                torch.set_num_threads(threads)
            self._running = 0
            yield i, outcome


#: in a local worker: the pid of the sweep that started it
_PARENT: int | None = None


def _init_worker():
    from danlab.runs import threads_for_worker

    global _PARENT
    _PARENT = os.getppid()
    _die_with_parent()
    threads_for_worker()


def _call(fn, *args):
    """One run in a local worker. A worker whose sweep has died exits here: the parent-death
    signal stops only the run in progress (a training checkpoints on SIGTERM and returns), and
    the pool's queue still holds the next runs, which an orphan would otherwise go on to run."""
    if _PARENT is not None and _parent_gone(_PARENT):
        os._exit(1)
    return fn(*args)


def _parent_gone(pid: int) -> bool:
    """Whether the sweep `pid` has died. Its main thread can be dead (the parent-death signal
    already sent) while its other threads still exit, so getppid() alone can still say pid:
    a zombie main thread counts as dead (Linux /proc; elsewhere getppid() only)."""
    if os.getppid() != pid:
        return True
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] in ("Z", "X")
    except (OSError, IndexError):
        return False


def _die_with_parent() -> None:
    """On Linux, a worker gets SIGTERM when the sweep that started it dies (even by SIGKILL),
    instead of running on as an orphan."""
    import ctypes
    import signal
    import sys

    if sys.platform.startswith("linux"):
        try:
            ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
        except OSError:
            pass


class Local:
    """A pool of `workers` spawned processes, kept for every sweep this executor runs."""

    def __init__(self, workers: int | None = None):
        self.workers = workers or os.cpu_count() or 1
        check_int_at_least("workers", self.workers, 1)
        self._futures: dict = {}
        self._pool = None

    def describe(self) -> str:
        return f"{self.workers} local processes"

    def running(self) -> int:
        return sum(1 for f in self._futures if f.running())

    def pool(self) -> ProcessPoolExecutor:
        if self._pool is None:
            import multiprocessing

            ctx = multiprocessing.get_context("spawn")  # no forked torch state
            self._pool = ProcessPoolExecutor(self.workers, mp_context=ctx,
                                             initializer=_init_worker)
        return self._pool

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown()
            self._pool = None

    def map(self, fn, args_list, retries: int = 2):
        """A worker that dies (killed, out of memory) breaks the pool: the runs it held are
        resubmitted to a fresh pool (`retries` times), then reported as failed."""
        from concurrent.futures.process import BrokenProcessPool

        todo = dict(enumerate(args_list))
        tries = dict.fromkeys(todo, 0)
        while todo:
            pool = self.pool()
            self._futures = {pool.submit(_call, fn, *todo[i]): i for i in todo}
            pending = set(self._futures)
            broken = False
            try:
                while pending:
                    finished, pending = wait(pending, return_when=FIRST_COMPLETED)
                    for f in finished:
                        i = self._futures[f]
                        exc = f.exception()
                        if isinstance(exc, BrokenProcessPool):
                            broken = True
                            tries[i] += 1
                            if tries[i] <= retries:
                                continue
                            exc = RuntimeError(f"its worker process died {tries[i]} times")
                        del todo[i]
                        yield i, exc if exc is not None else f.result()
            except BaseException:
                for f in pending:
                    f.cancel()
                raise
            if broken:
                self._pool.shutdown(wait=False, cancel_futures=True)
                self._pool = None


class Ray:
    def __init__(self, address: str | None = None, cpus: float = 1.0, gpus: float = 0.0):
        self.ray = _optional("ray", "ray")
        self.address, self.cpus, self.gpus = address, cpus, gpus
        self._pending = 0

    def describe(self) -> str:
        where = self.address or "a local Ray cluster"
        return f"Ray ({where}; {self.cpus:g} CPU, {self.gpus:g} GPU per run)"

    def running(self) -> int:
        return self._pending

    def map(self, fn, args_list):
        ray = self.ray
        if not ray.is_initialized():
            kw = {"address": self.address} if self.address else {
                "num_cpus": os.cpu_count(), "include_dashboard": False}
            ray.init(log_to_driver=False, **kw)
        task = ray.remote(_ray_call).options(num_cpus=self.cpus, num_gpus=self.gpus)
        refs = {task.remote(fn, args): i for i, args in enumerate(args_list)}
        pending = list(refs)
        while pending:
            self._pending = len(pending)
            done, pending = ray.wait(pending, num_returns=1)
            for ref in done:
                try:
                    outcome = ray.get(ref)
                except Exception as exc:  # noqa: BLE001 - RayTaskError wraps the run's error
                    outcome = getattr(exc, "cause", None) or exc
                yield refs[ref], outcome


def _ray_call(fn, args):
    from danlab.runs import threads_for_worker

    threads_for_worker()
    return fn(*args)


class Slurm:
    def __init__(self, folder: str, partition: str | None = None, time_min: int = 60,
                 gpus: int = 0, cpus: int = 1, cluster: str | None = None):
        self.submitit = _optional("submitit", "slurm")
        self.folder, self.partition, self.time_min = folder, partition, time_min
        self.gpus, self.cpus, self.cluster = gpus, cpus, cluster
        self._pending = 0

    def describe(self) -> str:
        return (f"submitit ({self.cluster or 'slurm'}, partition {self.partition or '-'}, "
                f"{self.time_min} min, {self.gpus} GPU per run)")

    def running(self) -> int:
        return self._pending

    def map(self, fn, args_list):
        ex = self.submitit.AutoExecutor(folder=self.folder, cluster=self.cluster)
        params = dict(timeout_min=self.time_min, cpus_per_task=self.cpus)
        if self.cluster in (None, "slurm"):
            params.update(slurm_partition=self.partition, slurm_gpus_per_task=self.gpus or None,
                          slurm_array_parallelism=256)
        ex.update_parameters(**{k: v for k, v in params.items() if v is not None})
        columns = list(zip(*args_list)) if args_list else []
        jobs = ex.map_array(_slurm_call, [fn] * len(args_list), *columns) if args_list else []
        pending = dict(enumerate(jobs))
        while pending:
            self._pending = len(pending)
            for i in [i for i, j in pending.items() if j.done()]:
                job = pending.pop(i)
                try:
                    outcome = job.result()
                except Exception as exc:  # noqa: BLE001 - the job's failure, reported
                    outcome = exc
                yield i, outcome
            time.sleep(0.5)


def _slurm_call(fn, *args):
    from danlab.runs import threads_for_worker

    threads_for_worker()
    return fn(*args)


def make_executor(name: str = "local", workers: int | None = None, address: str | None = None,
                  cpus: float = 1.0, gpus: float = 0.0, folder: str = "danlab-slurm",
                  partition: str | None = None, time_min: int = 60, cluster: str | None = None):
    check_choice("executor", name, EXECUTORS)
    if name == "inline":
        return Inline()
    if name == "local":
        return Local(workers)
    if name == "ray":
        return Ray(address, cpus, gpus)
    return Slurm(folder, partition, time_min, int(gpus), int(cpus), cluster)
