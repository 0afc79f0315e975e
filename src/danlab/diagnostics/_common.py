"""Shared machinery of the diagnostics: input checks, projected-innovation sampling, and
batched forward-mode derivatives of any callable a(x, zeta) on (..., N_x) tensors.

Derivatives never vmap the user's callable: a batch of tangent directions becomes a leading
batch dimension of the inputs (every analysis operator in danlab accepts (..., N_x)), so a
callable only needs to be batched and forward-mode differentiable (torch.func.jvp).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor
from torch.func import jvp

from danlab.errors import DanlabError, check

Operator = Callable[[Tensor, Tensor], Tensor]

#: rows x N_x of one call of the operator (bounds the memory of batched derivatives)
DEFAULT_ELEMENTS = 2**19


def as_states(x, name: str = "x") -> tuple[Tensor, tuple[int, ...]]:
    """Check that x is a finite floating tensor (..., N_x); return it as (B, N_x) and the
    leading shape."""
    check(isinstance(x, Tensor), f"{name} must be a torch.Tensor of shape (..., N_x), "
                                 f"got {type(x).__name__}")
    check(x.is_floating_point(), f"{name} must be a floating-point tensor, got dtype {x.dtype}")
    check(x.dim() >= 1 and x.shape[-1] >= 2,
          f"{name} must have shape (..., N_x) with N_x >= 2, got {tuple(x.shape)}")
    check(x.numel() > 0, f"{name} is empty: shape {tuple(x.shape)}")
    if not bool(torch.isfinite(x).all()):
        bad = int((~torch.isfinite(x)).sum())
        raise DanlabError(f"{name} has {bad} non-finite value(s) (NaN or inf): the diagnostics "
                          "need finite states")
    lead = tuple(x.shape[:-1])
    return x.reshape(-1, x.shape[-1]), lead


def check_operator(a: Operator, x: Tensor) -> None:
    """Call `a` once on one state and zero innovation: it must return a finite tensor of the
    input's shape. Turns any failure into a DanlabError with one clear line."""
    check(callable(a), f"the analysis operator must be callable a(x, zeta), got {type(a).__name__}")
    x1 = x[:1]
    try:
        with torch.no_grad():
            out = a(x1, torch.zeros_like(x1))
    except Exception as exc:  # noqa: BLE001 - any failure of user code becomes one line
        raise DanlabError(f"the analysis operator failed on a state of shape {tuple(x1.shape)} "
                          f"(dtype {x1.dtype}): {type(exc).__name__}: {_first_line(exc)}") from None
    check(isinstance(out, Tensor),
          f"the analysis operator must return a tensor, got {type(out).__name__}")
    check(tuple(out.shape) == tuple(x1.shape),
          f"the analysis operator returned shape {tuple(out.shape)} for inputs of shape "
          f"{tuple(x1.shape)}: it must return an increment of the same shape (..., N_x)")
    check(bool(torch.isfinite(out).all()),
          "the analysis operator returned non-finite values (NaN or inf) at zeta = 0")


def operator_device(a) -> torch.device:
    """The device of an operator's parameters (the CPU for a plain function)."""
    params = getattr(a, "parameters", None)
    p = next(iter(params()), None) if callable(params) else None
    return p.device if p is not None else torch.device("cpu")


def _first_line(exc: Exception) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else ""


def check_site(name: str, r, nx: int) -> int:
    check(isinstance(r, int) and not isinstance(r, bool) and 0 <= r < nx,
          f"{name}={r!r} is out of range: it must be an integer site index in [0, {nx - 1}]")
    return r


def check_samples(n_samples) -> int:
    check(isinstance(n_samples, int) and not isinstance(n_samples, bool) and n_samples >= 2,
          f"n_samples={n_samples!r} is not allowed: the regression needs an integer N_p >= 2")
    return n_samples


def rows_per_call(nx: int, max_elements: int | None) -> int:
    return max(1, (max_elements or DEFAULT_ELEMENTS) // nx)


def safe(fn: Callable, what: str):
    """Run fn(); a failure inside torch.func becomes a DanlabError naming the derivative."""
    try:
        return fn()
    except DanlabError:
        raise
    except (RuntimeError, NotImplementedError, TypeError) as exc:
        raise DanlabError(f"could not differentiate the analysis operator ({what}): "
                          f"{type(exc).__name__}: {_first_line(exc)}. It must be a batched "
                          "torch function that supports forward-mode AD (torch.func.jvp)") from None


# --- projected innovations ---------------------------------------------------------------

class ZetaSampler:
    """Samples zeta = H^T R^{-1/2} xi, xi ~ N(0, I_y) (App. H), i.e. mask * xi / sigma on the
    full grid; or zeta ~ N(0, zeta_cov) for a given covariance. `obs` (an ObservationConfig)
    draws a fresh random mask per sample (random configurations); `mask` (N_x,) or (B, N_x)
    fixes the observed sites."""

    def __init__(self, nx: int, obs=None, mask: Tensor | None = None,
                 zeta_cov: Tensor | None = None, sigma: float | None = None):
        check(sum(v is not None for v in (obs, mask, zeta_cov)) <= 1,
              "give at most one of obs, mask and zeta_cov")
        self.nx, self.obs, self.mask, self.root = nx, obs, None, None
        self.sigma = float(sigma if sigma is not None else (obs.sigma if obs is not None else 1.0))
        check(self.sigma > 0, f"sigma={self.sigma!r} is not allowed: it must be > 0")
        if mask is not None:
            check(isinstance(mask, Tensor) and mask.shape[-1] == nx,
                  f"mask must be a tensor (..., {nx}), got "
                  f"{tuple(mask.shape) if isinstance(mask, Tensor) else type(mask).__name__}")
            self.mask = mask.bool()
        if zeta_cov is not None:
            check(isinstance(zeta_cov, Tensor) and tuple(zeta_cov.shape) == (nx, nx),
                  f"zeta_cov must be a ({nx}, {nx}) tensor")
            s = 0.5 * (zeta_cov + zeta_cov.T).double()
            w, v = torch.linalg.eigh(s)
            check(bool(w.min() > -1e-10 * max(1.0, float(w.abs().max()))),
                  "zeta_cov must be positive semi-definite")
            self.root = v * w.clamp_min(0).sqrt()  # root @ root.T = zeta_cov

    def __call__(self, n: int, batch: int, generator: torch.Generator, like: Tensor,
                 antithetic: bool = False) -> Tensor:
        """n samples for each of `batch` states: (n, batch, N_x), dtype/device of `like`.
        antithetic: draw ceil(n/2) and append their negatives (odd moments cancel)."""
        if antithetic:
            half = self(-(-n // 2), batch, generator, like)
            return torch.cat([half, -half])[:n]
        shape = (n, batch, self.nx)
        xi = torch.randn(shape, generator=generator, dtype=torch.float64)
        if self.root is not None:
            z = xi @ self.root.T
        else:
            if self.obs is not None:
                m = self.obs.sample_mask((n, batch), self.nx, generator)
            elif self.mask is not None:
                m = self.mask.cpu()
            else:
                m = None
            z = xi / self.sigma if m is None else torch.where(m, xi / self.sigma, 0.0)
        return z.to(dtype=like.dtype, device=like.device)


def make_generator(generator: torch.Generator | None, seed: int = 0) -> torch.Generator:
    if generator is not None:
        check(isinstance(generator, torch.Generator), "generator must be a torch.Generator")
        check(generator.device.type == "cpu", "generator must be a CPU torch.Generator")
        return generator
    g = torch.Generator()
    g.manual_seed(seed)
    return g


def pinv_solve_right(c: Tensor, d: Tensor, rtol: float) -> Tensor:
    """c @ pinv(d) for symmetric PSD d (..., N, N), relative cut-off rtol on the eigenvalues."""
    return c @ torch.linalg.pinv(d, rtol=rtol, hermitian=True)


# --- batched forward-mode derivatives ----------------------------------------------------

def directional(a: Operator, x: Tensor, zeta: Tensor, tx: Tensor | None, tz: Tensor | None,
                second: bool = False) -> Tensor:
    """Derivatives of a at (x, zeta) (all (R, N_x)) along tangent rows:
    first order (second=False): d/ds a(x + s tx, zeta + s tz) (tx or tz may be None);
    second order: d/dt d/ds a(x + t tx, zeta + s tz)."""
    if not second:
        if tx is None:
            return jvp(lambda z: a(x, z), (zeta,), (tz,))[1]
        if tz is None:
            return jvp(lambda xx: a(xx, zeta), (x,), (tx,))[1]
        return jvp(a, (x, zeta), (tx, tz))[1]

    def inner(xx):
        return jvp(lambda z: a(xx, z), (zeta,), (tz,))[1]

    return jvp(inner, (x,), (tx,))[1]


def run_rows(fn: Callable[[slice], Tensor], n_rows: int, chunk: int) -> Tensor:
    """Concatenate fn(rows) over chunks of rows along dim 0."""
    return torch.cat([fn(slice(s, min(s + chunk, n_rows))) for s in range(0, n_rows, chunk)])
