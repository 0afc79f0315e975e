"""Evaluate values and forward-mode derivatives of a(x, zeta) over many independent rows, in
chunks: row k uses state x_table[x_idx[k]], innovation z_table[z_idx[k]] (zero if none),
and unit tangents e_{tx_site[k]} in x and/or e_{tz_site[k]} in zeta."""

from __future__ import annotations

import torch
from torch import Tensor
from torch.nn.functional import one_hot

from danlab.diagnostics._common import Operator, directional


def eval_rows(a: Operator, x_table: Tensor, x_idx: Tensor, *, z_table: Tensor | None = None,
              z_idx: Tensor | None = None, tx_site: Tensor | None = None,
              tz_site: Tensor | None = None, chunk: int = 1024) -> Tensor:
    nx = x_table.shape[-1]
    n = x_idx.shape[0]
    outs = []
    with torch.no_grad():
        for s in range(0, n, chunk):
            sl = slice(s, min(s + chunk, n))
            xx = x_table[x_idx[sl]]
            zz = z_table[z_idx[sl]] if z_table is not None else torch.zeros_like(xx)
            tx = _unit(tx_site, sl, nx, xx)
            tz = _unit(tz_site, sl, nx, xx)
            if tx is None and tz is None:
                out = a(xx, zz)
            elif tx is not None and tz is not None:
                out = directional(a, xx, zz, tx, tz, second=True)
            else:
                out = directional(a, xx, zz, tx, tz)
            outs.append(out)
    return torch.cat(outs)


def _unit(sites: Tensor | None, sl: slice, nx: int, like: Tensor) -> Tensor | None:
    if sites is None:
        return None
    return one_hot(sites[sl], nx).to(dtype=like.dtype, device=like.device)
