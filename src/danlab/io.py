"""Crash-safe file output: every file danlab writes goes through `atomic_write`
(temporary file in the same directory, fsync, rename), so a reader never sees half a file.
Files get the permissions of the user's umask (as open() would give), not mkstemp's 0600, so
colleagues on a shared cluster can read results; JSON is strict (NaN and inf become null)."""

from __future__ import annotations

import contextlib
import errno
import io
import json
import math
import os
import tempfile
from collections.abc import Callable
from pathlib import Path

import torch

from danlab.errors import DanlabError


def atomic_write(path: str | os.PathLike, write: Callable[[io.BufferedWriter], None]) -> Path:
    """Call write(f) on a temporary file next to `path`, fsync it, then rename it onto `path`.
    On any failure (disk full, permission) the previous file at `path` is left untouched."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as exc:
        raise DanlabError(f"cannot write {str(path)!r}: {exc.strerror or exc}") from None
    try:
        os.chmod(tmp, 0o666 & ~_umask())
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        why = "the disk is full" if exc.errno == errno.ENOSPC else (exc.strerror or str(exc))
        raise DanlabError(f"cannot write {str(path)!r}: {why}; "
                          "the previous file is intact") from None
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    _fsync_dir(path.parent)
    return path


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _fsync_dir(directory: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def write_text(path, text: str) -> Path:
    return atomic_write(path, lambda f: f.write(text.encode()))


def strict(obj):
    """obj with every non-finite float replaced by None (strict JSON has no NaN / inf)."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {k: strict(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [strict(v) for v in obj]
    return obj


def to_json(obj, indent: int | None = None) -> str:
    return json.dumps(strict(obj), indent=indent, allow_nan=False)


def write_json(path, obj) -> Path:
    return write_text(path, to_json(obj, indent=2) + "\n")


def save_torch(path, obj) -> Path:
    return atomic_write(path, lambda f: torch.save(obj, f))


def save_netcdf(path, dataset) -> Path:
    """Write an xarray Dataset atomically as netCDF."""
    return atomic_write(path, lambda f: f.write(dataset.to_netcdf()))


def save_figure(fig, path_stem) -> list[Path]:
    """Save a matplotlib figure as PNG and PDF, atomically."""
    out = []
    for ext in ("png", "pdf"):
        buf = io.BytesIO()
        fig.savefig(buf, format=ext, dpi=130, bbox_inches="tight")
        out.append(atomic_write(f"{path_stem}.{ext}", lambda f, b=buf: f.write(b.getvalue())))
    return out


def append_jsonl(path, record: dict) -> None:
    """Append one line; a torn last line (crash mid-append) is skipped by `read_jsonl`.
    Disk full or permission errors become a DanlabError (earlier lines stay intact)."""
    try:
        with open(path, "a") as f:
            f.write(to_json(record) + "\n")
            f.flush()
            os.fsync(f.fileno())
    except OSError as exc:
        why = "the disk is full" if exc.errno == errno.ENOSPC else (exc.strerror or str(exc))
        raise DanlabError(f"cannot append to {str(path)!r}: {why}") from None


def read_jsonl(path) -> list[dict]:
    rows = []
    with contextlib.suppress(FileNotFoundError), open(path) as f:
        for line in f:
            with contextlib.suppress(json.JSONDecodeError):
                rows.append(json.loads(line))
    return rows
