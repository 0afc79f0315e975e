"""Lorenz-96 (Lorenz & Emanuel 1998), integrated by RK4 with a fixed inner step.

States are tensors of shape (..., N_x); every leading dimension is a batch dimension.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from danlab.errors import check, check_positive


class Lorenz96:
    """dx_n/dt = (x_{n+1} - x_{n-2}) x_{n-1} - x_n + F, periodic in n.

    `forecast(x, dt)` integrates over `dt` with n = max(1, round(dt / inner_dt)) RK4 steps of
    size dt / n, so any dt is honoured exactly (DAPPER's L96 uses inner_dt = 0.05).
    """

    def __init__(self, forcing: float = 8.0, inner_dt: float = 0.01):
        check(math.isfinite(forcing), f"forcing={forcing!r} is not allowed: it must be finite")
        check_positive("inner_dt", inner_dt)
        self.forcing = float(forcing)
        self.inner_dt = float(inner_dt)

    def __repr__(self) -> str:
        return f"Lorenz96(forcing={self.forcing}, inner_dt={self.inner_dt})"

    # climatological statistics at F=8 (mean, std), used to normalise network inputs
    climatology = (2.35, 3.63)

    def tendency(self, x: Tensor) -> Tensor:
        xp1 = torch.roll(x, -1, -1)
        xm1 = torch.roll(x, 1, -1)
        xm2 = torch.roll(x, 2, -1)
        return (xp1 - xm2) * xm1 - x + self.forcing

    def rk4_step(self, x: Tensor, h: float) -> Tensor:
        f = self.tendency
        k1 = f(x)
        k2 = f(x + (0.5 * h) * k1)
        k3 = f(x + (0.5 * h) * k2)
        k4 = f(x + h * k3)
        return x + (h / 6.0) * (k1 + 2.0 * (k2 + k3) + k4)

    def n_steps(self, dt: float) -> int:
        return max(1, round(abs(dt) / self.inner_dt))

    def forecast(self, x: Tensor, dt: float) -> Tensor:
        """Integrate x (..., N_x) over time dt (negative dt integrates backward)."""
        n = self.n_steps(dt)
        h = dt / n
        for _ in range(n):
            x = self.rk4_step(x, h)
        return x

    def tangent_linear(self, x: Tensor, dx: Tensor, dt: float) -> tuple[Tensor, Tensor]:
        """(M(x), M'(x) dx) by forward-mode autodiff; dx has the shape of x."""
        return torch.func.jvp(lambda z: self.forecast(z, dt), (x,), (dx,))

    def spinup(self, x: Tensor, time: float) -> Tensor:
        """Integrate without gradient, to bring x onto the attractor."""
        with torch.no_grad():
            return self.forecast(x, time)


def lyapunov_exponents(
    model: Lorenz96, x0: Tensor, n_exponents: int, dt: float = 0.05, n_steps: int = 4000,
    transient: int = 500,
) -> Tensor:
    """Leading Lyapunov exponents by the QR (Benettin) method on a single state x0 (N_x,)."""
    nx = x0.shape[-1]
    check(1 <= n_exponents <= nx, f"n_exponents={n_exponents} must be in [1, {nx}]")
    q = torch.linalg.qr(torch.eye(nx, n_exponents, dtype=x0.dtype, device=x0.device))[0]
    x = model.spinup(x0, transient * dt)
    total = torch.zeros(n_exponents, dtype=x0.dtype, device=x0.device)
    jvp_cols = torch.func.vmap(lambda v, z: model.tangent_linear(z, v, dt)[1], in_dims=(1, None),
                               out_dims=1)
    for _ in range(n_steps):
        with torch.no_grad():
            q_new = jvp_cols(q, x)
            x = model.forecast(x, dt)
        q, r = torch.linalg.qr(q_new)
        total += torch.log(torch.abs(torch.diagonal(r)))
    return total / (n_steps * dt)
