"""Kuramoto–Sivashinsky (KS): u_t = -u u_x - u_xx - u_xxxx on a periodic domain of length L.

Pseudo-spectral in space (N_x grid points, real FFTs), ETDRK4 in time (Cox & Matthews 2002,
with the contour-integral coefficients of Kassam & Trefethen 2005). The defaults are the
settings of DAPPER 1.8.1 (`dapper.mods.KS`, twin setup `bocquet2019.py`): L = 32π, N_x = 128,
model step 0.5, contour of 16 points on the upper half of the unit circle (real part taken).

As in DAPPER, the Nyquist wavenumber (index N_x / 2 of the real FFT) is given wavenumber 0: its
linear operator and its nonlinear term vanish, so its coefficient is carried unchanged, as the
mean (index 0) is. A state drawn by `random_state` has both zero; a state that has them keeps
them forever (DAPPER's trajectories do, e.g. the test vectors in tests/data).

States are tensors (..., N_x); every leading dimension is a batch dimension. The step is
differentiable (torch.fft), on any device, in float32 or float64: its coefficients are
computed once in float64 and cast once per (dtype, device).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from danlab.dynamics.base import Model
from danlab.errors import check, check_int_at_least, check_positive

#: points on the contour (upper half of the unit circle) averaged over for the coefficients
CONTOUR_POINTS = 16


def etdrk4_coefficients(nx: int, length: float, h: float) -> dict[str, Tensor]:
    """ETDRK4 coefficients (nx // 2 + 1,) for a step h, in float64 / complex128 on the CPU.

    With c = h λ (λ = k² - k⁴ the linear operator of mode k), the step needs e^c, e^{c/2} and
    the phi-functions Q = h (e^{c/2} - 1) / c and Cox-Matthews' f1, f2, f3 (h times a ratio
    of exponentials over c³). Each is evaluated as the mean over points c + r on a small circle
    around c (Cauchy's integral formula), which avoids the cancellation of the direct formula
    for small |c| (it is 0 / 0 at c = 0). The circle is symmetric about the real axis and the
    functions are real on it, so the mean over the upper half, real part taken, suffices.
    """
    j = torch.arange(nx // 2 + 1, dtype=torch.float64)
    j[-1] = 0.0  # DAPPER's treatment of the Nyquist wavenumber (see the module docstring)
    k = 2.0 * math.pi / length * j
    lam = k**2 - k**4
    theta = math.pi * (torch.arange(CONTOUR_POINTS, dtype=torch.float64) + 0.5) / CONTOUR_POINTS
    r = torch.polar(torch.ones_like(theta), theta)  # (M,) points on the upper unit half circle
    c = (h * lam).to(torch.complex128)[:, None] + r  # (nx//2+1, M)
    ec = torch.exp(c)
    c3 = c**3

    def mean_real(z: Tensor) -> Tensor:
        return h * z.mean(dim=-1).real

    return {
        "E": torch.exp(h * lam),
        "E2": torch.exp(0.5 * h * lam),
        "Q": mean_real((torch.exp(c / 2) - 1.0) / c),
        "f1": mean_real((-4.0 - c + ec * (4.0 - 3.0 * c + c**2)) / c3),
        "f2": mean_real((2.0 + c + ec * (c - 2.0)) / c3),
        "f3": mean_real((-4.0 - 3.0 * c - c**2 + ec * (4.0 - c)) / c3),
        # nonlinear term in Fourier space: F[-u u_x] = F[-(u²)_x / 2] = -i k / 2 F[u²]
        "g": (-0.5j * k).to(torch.complex128),
    }


class KuramotoSivashinsky(Model):
    """The KS equation on N_x grid points of a periodic domain of length `length`.

    `forecast(x, dt)` takes n = dt / inner_dt ETDRK4 steps (dt must be a non-negative multiple of
    inner_dt: the coefficients belong to one step size). The leading Lyapunov exponent is about
    0.09 at the defaults (docs/ks.md), a Lyapunov time of ~11 model time units.
    """

    name = "ks"
    has_backward = False  # backward in time, -u_xxxx becomes growth ~ e^{k^4 t}: ill-posed
    # A smooth random start (modes 1-4) grows into cells at the most unstable wavelength, then
    # breaks into chaos: the spread of every one of 512 starts is at the attractor's by t = 45
    # (docs/ks.md). 150 (300 steps, DAPPER's spin-up of its start too) leaves a factor 3, about
    # 13 Lyapunov times more for the start to be forgotten.
    spinup_time: float = 150.0
    # The autocorrelation of a site is 0.52 at lag 5, 0.18 at lag 10, 0.07 at lag 15 (L96's:
    # ~0 by 0.2); at 10 the climatology's 200 samples x 32 trajectories cost ~4300 steps.
    climatology_interval: float = 10.0

    def __init__(self, nx: int = 128, length: float = 32 * math.pi, inner_dt: float = 0.5):
        check_int_at_least("nx", nx, 4)
        check(nx % 2 == 0, f"nx={nx!r} is not allowed: it must be even (real FFT with a "
                           "Nyquist wavenumber)")
        check_positive("length", length)
        check_positive("inner_dt", inner_dt)
        self.nx = nx
        self.fixed_nx = nx
        self.length = float(length)
        self.inner_dt = float(inner_dt)
        self._coef64 = etdrk4_coefficients(nx, self.length, self.inner_dt)
        self._coef_cache: dict[tuple[torch.dtype, torch.device], dict[str, Tensor]] = {}

    def options(self) -> dict:
        return {"nx": self.nx, "length": self.length, "inner_dt": self.inner_dt}

    # --- coefficients, steps -----------------------------------------------------------------

    def coefficients(self, dtype: torch.dtype, device: torch.device) -> dict[str, Tensor]:
        """The step's coefficients cast to a real dtype and a device (cached)."""
        key = (dtype, torch.device(device))
        coef = self._coef_cache.get(key)
        if coef is None:
            cdtype = torch.complex64 if dtype == torch.float32 else torch.complex128
            coef = {name: c.to(device=device, dtype=cdtype if c.is_complex() else dtype)
                    for name, c in self._coef64.items()}
            self._coef_cache[key] = coef
        return coef

    def n_steps(self, dt: float) -> int:
        """Number of inner steps in dt; a one-line DanlabError unless dt = n inner_dt, n >= 0
        (to 1e-9 relative; dt = 0 is the identity)."""
        try:
            if isinstance(dt, (bool, str, bytes)):
                raise TypeError
            n = round(float(dt) / self.inner_dt)
            ok = n >= 0 and abs(n * self.inner_dt - float(dt)) <= 1e-9 * abs(float(dt))
        except (TypeError, ValueError, OverflowError):
            ok = False
        check(ok, f"dt={dt!r} is not allowed for model 'ks': it must be a non-negative multiple of "
                  f"inner_dt={self.inner_dt!r} (ETDRK4 coefficients belong to one step size)")
        return n

    def _check_state(self, x: Tensor) -> None:
        check(isinstance(x, Tensor) and x.dtype in (torch.float32, torch.float64),
              f"state of type {getattr(x, 'dtype', type(x).__name__)} is not allowed for "
              "model 'ks': it must be a float32 or float64 tensor")
        check(x.dim() >= 1 and x.shape[-1] == self.nx,
              f"state of shape {tuple(x.shape)} is not allowed for model 'ks': its last "
              f"dimension must be nx={self.nx}")

    def _nonlinear(self, v: Tensor, g: Tensor) -> Tensor:
        u = torch.fft.irfft(v, n=self.nx, dim=-1)
        return g * torch.fft.rfft(u * u, dim=-1)

    def _step(self, v: Tensor, c: dict[str, Tensor]) -> Tensor:
        """One ETDRK4 step on Fourier coefficients v (..., nx // 2 + 1)."""
        g = c["g"]
        nv = self._nonlinear(v, g)
        a = c["E2"] * v + c["Q"] * nv
        na = self._nonlinear(a, g)
        b = c["E2"] * v + c["Q"] * na
        nb = self._nonlinear(b, g)
        cc = c["E2"] * a + c["Q"] * (2.0 * nb - nv)
        nc = self._nonlinear(cc, g)
        return c["E"] * v + c["f1"] * nv + 2.0 * c["f2"] * (na + nb) + c["f3"] * nc

    def forecast(self, x: Tensor, dt: float) -> Tensor:
        """Integrate x (..., N_x) over dt = n inner_dt (n ETDRK4 steps); differentiable."""
        self._check_state(x)
        n = self.n_steps(dt)
        if n == 0:
            return x
        c = self.coefficients(x.dtype, x.device)
        v = torch.fft.rfft(x, dim=-1)
        for _ in range(n):
            v = self._step(v, c)
        return torch.fft.irfft(v, n=self.nx, dim=-1)

    # --- tangent linear ------------------------------------------------------------------------

    def _nonlinear_tangent(self, v: Tensor, dv: Tensor, g: Tensor) -> tuple[Tensor, Tensor]:
        u = torch.fft.irfft(v, n=self.nx, dim=-1)
        du = torch.fft.irfft(dv, n=self.nx, dim=-1)
        return g * torch.fft.rfft(u * u, dim=-1), (2.0 * g) * torch.fft.rfft(u * du, dim=-1)

    def forecast_tangent(self, x: Tensor, dx: Tensor, dt: float) -> tuple[Tensor, Tensor]:
        """(M(x), M'(x) dx): the ETDRK4 step differentiated by hand (exact for the discrete
        scheme). x broadcasts against dx, so x (B, 1, N_x) carries n tangent rows
        dx (B, n, N_x) at the cost of one primal; returns M(x) of x's shape."""
        self._check_state(x)
        self._check_state(dx)
        n = self.n_steps(dt)
        if n == 0:
            return x, dx
        c = self.coefficients(x.dtype, x.device)
        E, E2, Q, g = c["E"], c["E2"], c["Q"], c["g"]
        v, dv = torch.fft.rfft(x, dim=-1), torch.fft.rfft(dx, dim=-1)
        for _ in range(n):
            nv, dnv = self._nonlinear_tangent(v, dv, g)
            a, da = E2 * v + Q * nv, E2 * dv + Q * dnv
            na, dna = self._nonlinear_tangent(a, da, g)
            b, db = E2 * v + Q * na, E2 * dv + Q * dna
            nb, dnb = self._nonlinear_tangent(b, db, g)
            cc, dcc = E2 * a + Q * (2.0 * nb - nv), E2 * da + Q * (2.0 * dnb - dnv)
            nc, dnc = self._nonlinear_tangent(cc, dcc, g)
            v = E * v + c["f1"] * nv + 2.0 * c["f2"] * (na + nb) + c["f3"] * nc
            dv = E * dv + c["f1"] * dnv + 2.0 * c["f2"] * (dna + dnb) + c["f3"] * dnc
        return (torch.fft.irfft(v, n=self.nx, dim=-1), torch.fft.irfft(dv, n=self.nx, dim=-1))

    def tangent_linear(self, x: Tensor, dx: Tensor, dt: float) -> tuple[Tensor, Tensor]:
        """(M(x), M'(x) dx), dx of the shape of x or broadcasting to it (hand-written TL)."""
        return self.forecast_tangent(x, dx.expand_as(x), dt)

    def tangent_rows(self, x: Tensor, e: Tensor, dt: float) -> Tensor:
        # the primal rides along once, broadcast against the n tangent rows
        return self.forecast_tangent(x.unsqueeze(-2), e, dt)[1]

    # --- starting points -----------------------------------------------------------------------

    def random_state(self, n: int, nx: int, generator: torch.Generator) -> Tensor:
        """n smooth random fields (n, N_x), float64 on the CPU, in the family of DAPPER's start
        cos(x/16)(1 + sin(x/16)) (modes 1 and 2, std 0.79): modes 1-4 of the domain, an
        N(0, 0.35²) amplitude per cosine and sine (std 0.7), zero mean and Nyquist mode (both
        are carried unchanged by the scheme). Not larger: smooth fields with max |u| > ~5.5
        steepen and blow up the explicit nonlinear stage at step 0.5 (docs/ks.md); of 2^18 of
        these, the largest has max |u| = 3.9."""
        check_int_at_least("n", n, 1)
        self.check_nx(nx)
        coef = 0.35 * torch.randn(n, 4, 2, generator=generator, dtype=torch.float64)
        grid = self.length / nx * torch.arange(1, nx + 1, dtype=torch.float64)
        k = 2.0 * math.pi / self.length * torch.arange(1, 5, dtype=torch.float64)
        phase = k[:, None] * grid  # (4, N_x)
        return coef[..., 0] @ torch.cos(phase) + coef[..., 1] @ torch.sin(phase)


__all__ = ["CONTOUR_POINTS", "KuramotoSivashinsky", "etdrk4_coefficients"]
