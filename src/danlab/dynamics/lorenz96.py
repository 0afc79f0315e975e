"""Lorenz-96 (Lorenz & Emanuel 1998), integrated by RK4 with a fixed inner step.

States are tensors of shape (..., N_x); every leading dimension is a batch dimension.
"""

from __future__ import annotations

import math
import os
import warnings

import torch
from torch import Tensor

from danlab.dynamics.base import Model
from danlab.errors import check, check_positive

#: bytes per block (rows x N_x elements) when a large batch is integrated on the CPU without
#: autograd: the RK4 temporaries of a 256 KiB block stay in a 2 MiB L2 cache
CPU_BLOCK_BYTES = 256 * 1024


def _neighbours(x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """(x_{n-2}, x_{n-1}, x_{n+1}) of x (..., N_x), periodic in n: views of one padded copy."""
    n = x.shape[-1]
    xp = torch.cat([x[..., -2:], x, x[..., :1]], -1)  # x_{-2}, x_{-1}, x_0..x_{N-1}, x_N
    return xp[..., :n], xp[..., 1:n + 1], xp[..., 3:]


#: opt-in (DANLAB_COMPILE=1 in the environment): the RK4 step through torch.compile, one fused
#: loop instead of ~30 tensor operations: faster forecasts on a CPU, the same bits, after a
#: compile of ~10 s per process and dtype, so it pays only for long runs (docs/performance.md).
#: One step is compiled, not the loop: an unrolled loop of dt / inner_dt = 100 steps (dt = 1)
#: did not finish compiling in 11 minutes. Falls back to eager (with a warning) where compiling
#: fails.
COMPILE = os.environ.get("DANLAB_COMPILE", "0") not in ("", "0")
_compiled = None


def _tendency(x: Tensor, forcing: float) -> Tensor:
    # one circular pad and four slices instead of three torch.roll copies; the operations are
    # DAPPER's, in its order ((x_{n+1} - x_{n-2}) x_{n-1} - x_n + F), so the result is bitwise
    # that of the roll form
    xm2, xm1, xp1 = _neighbours(x)
    d = (xp1 - xm2) * xm1
    return d.sub_(x).add_(forcing)  # in place on a fresh tensor: autograd-safe


def _rk4_step(x: Tensor, h: float, forcing: float) -> Tensor:
    k1 = _tendency(x, forcing)
    k2 = _tendency(x + (0.5 * h) * k1, forcing)
    k3 = _tendency(x + (0.5 * h) * k2, forcing)
    k4 = _tendency(x + h * k3, forcing)
    # x + (h/6) (k1 + 2 (k2 + k3) + k4), same rounding as written out, fewer temporaries
    acc = (k2 + k3).mul_(2.0).add_(k1).add_(k4).mul_(h / 6.0)
    return acc.add_(x)


def _rk4_steps(x: Tensor, h: float, n: int, forcing: float) -> Tensor:
    for _ in range(n):
        x = _rk4_step(x, h, forcing)
    return x


def _integrate(x: Tensor, h: float, n: int, forcing: float) -> Tensor:
    global _compiled, COMPILE
    if COMPILE:
        try:
            if _compiled is None:
                _compiled = torch.compile(_rk4_step, dynamic=True)
            for _ in range(n):
                x = _compiled(x, h, forcing)
            return x
        except Exception as exc:  # noqa: BLE001 - no compiler here: eager is always right
            COMPILE = False
            warnings.warn(f"DANLAB_COMPILE: torch.compile failed ({type(exc).__name__}); "
                          "integrating eagerly", stacklevel=2)
    return _rk4_steps(x, h, n, forcing)


def _chunked(x: Tensor) -> bool:
    return (x.device.type == "cpu" and x.numel() * x.element_size() > 2 * CPU_BLOCK_BYTES
            and not (torch.is_grad_enabled() and x.requires_grad))


class Lorenz96(Model):
    """dx_n/dt = (x_{n+1} - x_{n-2}) x_{n-1} - x_n + F, periodic in n.

    `forecast(x, dt)` integrates over `dt` with n = max(1, round(dt / inner_dt)) RK4 steps of
    size dt / n, so any dt is honoured exactly (DAPPER's L96 uses inner_dt = 0.05).
    """

    name = "l96"
    has_backward = True

    def __init__(self, forcing: float = 8.0, inner_dt: float = 0.01):
        check(isinstance(forcing, (int, float)) and math.isfinite(forcing),
              f"forcing={forcing!r} is not allowed: it must be a finite number")
        check_positive("inner_dt", inner_dt)
        self.forcing = float(forcing)
        self.inner_dt = float(inner_dt)

    def options(self) -> dict:
        return {"forcing": self.forcing, "inner_dt": self.inner_dt}

    def random_state(self, n: int, nx: int, generator: torch.Generator) -> Tensor:
        return self.forcing + torch.randn(n, nx, generator=generator, dtype=torch.float64)

    def backward(self, x: Tensor, dt: float) -> Tensor:
        """RK4 with step -dt / n: unstable on long times (backward, the damping becomes growth)."""
        return self.forecast(x, -dt)

    def tendency(self, x: Tensor) -> Tensor:
        return _tendency(x, self.forcing)

    def rk4_step(self, x: Tensor, h: float) -> Tensor:
        return _rk4_step(x, h, self.forcing)

    def n_steps(self, dt: float) -> int:
        return max(1, round(abs(dt) / self.inner_dt))

    def forecast(self, x: Tensor, dt: float) -> Tensor:
        """Integrate x (..., N_x) over time dt (negative dt integrates backward)."""
        n = self.n_steps(dt)
        h = dt / n
        if _chunked(x):
            # a large batch on the CPU without autograd: integrate it in L2-sized blocks of
            # rows, every inner step of a block while it is in cache (same arithmetic per row)
            rows = x.reshape(-1, x.shape[-1])
            out = torch.empty_like(rows)
            step = max(1, CPU_BLOCK_BYTES // (x.shape[-1] * x.element_size()))
            for i in range(0, rows.shape[0], step):
                out[i:i + step] = self._integrate(rows[i:i + step], h, n)
            return out.view(x.shape)
        return self._integrate(x, h, n)

    def _integrate(self, x: Tensor, h: float, n: int) -> Tensor:
        return _integrate(x, h, n, self.forcing)

    def tangent_linear(self, x: Tensor, dx: Tensor, dt: float) -> tuple[Tensor, Tensor]:
        """(M(x), M'(x) dx): forward-mode autodiff (torch.func.jvp) of the RK4 integration;
        dx has the shape of x (or broadcasts against it)."""
        return torch.func.jvp(lambda z: self.forecast(z, dt), (x,), (dx.expand_as(x),))

    def tangent_tendency(self, x: Tensor, dx: Tensor) -> Tensor:
        """The tendency's derivative at x applied to dx (hand-written, for speed)."""
        xm2, xm1, xp1 = _neighbours(x)
        dm2, dm1, dp1 = _neighbours(dx)
        return (dp1 - dm2) * xm1 + (xp1 - xm2) * dm1 - dx

    def forecast_tangent(self, x: Tensor, dx: Tensor, dt: float) -> tuple[Tensor, Tensor]:
        """Same as `tangent_linear`, by RK4 on the pair (x, dx): exact for the discrete scheme
        and several times cheaper than jvp on small batches. x broadcasts against dx, so
        x (B, 1, N_x) carries n tangent rows dx (B, n, N_x) at the cost of one primal."""
        n = self.n_steps(dt)
        h = dt / n
        f, df = self.tendency, self.tangent_tendency
        for _ in range(n):
            k1, d1 = f(x), df(x, dx)
            x2, dx2 = x + 0.5 * h * k1, dx + 0.5 * h * d1
            k2, d2 = f(x2), df(x2, dx2)
            x3, dx3 = x + 0.5 * h * k2, dx + 0.5 * h * d2
            k3, d3 = f(x3), df(x3, dx3)
            x4, dx4 = x + h * k3, dx + h * d3
            k4, d4 = f(x4), df(x4, dx4)
            x = x + (h / 6.0) * (k1 + 2.0 * (k2 + k3) + k4)
            dx = dx + (h / 6.0) * (d1 + 2.0 * (d2 + d3) + d4)
        return x, dx

    def tangent_rows(self, x: Tensor, e: Tensor, dt: float) -> Tensor:
        # the primal rides along once, broadcast against the n tangent rows: ~25x faster on CPU
        # than forward-mode autodiff of the batched forecast
        return self.forecast_tangent(x.unsqueeze(-2), e, dt)[1]


def lyapunov_exponents(
    model: Lorenz96, x0: Tensor, n_exponents: int, dt: float = 0.05, n_steps: int = 4000,
    transient: int = 500,
) -> Tensor:
    """Leading Lyapunov exponents by the QR (Benettin) method, averaged over a batch of
    independent states x0 (B, N_x) (or one state (N_x,)): returns (n_exponents,)."""
    x = x0.reshape(-1, x0.shape[-1])
    b, nx = x.shape
    check(1 <= n_exponents <= nx, f"n_exponents={n_exponents} must be in [1, {nx}]")
    eye = torch.eye(nx, n_exponents, dtype=x.dtype, device=x.device)
    q = eye.expand(b, nx, n_exponents)
    x = model.spinup(x, transient * dt)
    total = torch.zeros(b, n_exponents, dtype=x.dtype, device=x.device)
    for _ in range(n_steps):
        # the k tangent vectors of each state ride along as extra batch rows of one jvp
        xs = x.unsqueeze(1).expand(b, n_exponents, nx).reshape(-1, nx)
        vs = q.transpose(1, 2).reshape(-1, nx)
        with torch.no_grad():
            xn, mv = model.forecast_tangent(xs, vs, dt)
        x = xn.reshape(b, n_exponents, nx)[:, 0]
        q, r = torch.linalg.qr(mv.reshape(b, n_exponents, nx).transpose(1, 2))
        total += torch.log(torch.abs(torch.diagonal(r, dim1=-2, dim2=-1)))
    return (total / (n_steps * dt)).mean(0)
