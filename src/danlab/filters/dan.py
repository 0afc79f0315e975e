"""A data assimilation network as a filter: one state, a learned increment (Eq. 2 / 22)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from torch import Tensor

from danlab.errors import check_tensor
from danlab.filters.base import SingleStateFilter
from danlab.observations import projected_innovation


@dataclass
class DANFilter(SingleStateFilter):
    """x^a = x^f + a(x^f, zeta), zeta = H^T R^{-1} (y - H x^f); `operator(xf, zeta)` returns
    the whole increment. Gradients flow through it when the cycle runs with grad enabled."""

    name = "dan"
    operator: Callable[[Tensor, Tensor], Tensor] = field(metadata={"record": False})

    def init(self, x0: Tensor, streams) -> Tensor:
        """x0, after checking it matches the operator's dtype and device (one line, not a
        torch traceback deep inside a convolution)."""
        params = getattr(self.operator, "parameters", None)
        p = next(iter(params()), None) if callable(params) else None
        if p is not None:
            check_tensor("the first guess x0 (the twin's data)", x0, like=p)
        return x0

    def analysis(self, state: Tensor, y: Tensor, mask: Tensor, sigma: float, *, model=None,
                 dt=None) -> Tensor:
        zeta = projected_innovation(y, mask, state, sigma)
        return state + self.operator(state, zeta)
