"""Ensemble-space linear algebra shared by the ensemble filters (EnKF-N, IEnKF-N, ETKF).

Conventions (R = sigma^2 I, observations on the full grid with a site mask):

* ``E`` is an ensemble (B, N, N_x); ``A = E - mean`` its anomalies (rows = members).
* ``Y = mask * A / sigma`` are the normalised observation anomalies R^{-1/2} H X with the
  unobserved rows of H X set to zero, and ``dy = mask * (y - mean) / sigma`` the normalised
  innovation. Zero rows change nothing in Y Y^T or Y dy, so a batch whose trajectories observe
  different sites (or none: N_y = 0) is one tensor and the maths below is exact for each.
* The analyses are functions of ``G = Y Y^T`` (N, N) and its shifts ``G + z I`` (z > 0, SPD).
  Two equivalent routes compute them:

  - eigenbasis route (LETKF, and the reference for the tests): G = V diag(lam) V^T by one
    batched ``eigh``, lam the squared singular values of Y padded with zeros to N; every
    function of G + z I is then diagonal;
  - Gram route (EnKF-N, IEnKF-N, ETKF; no eigendecomposition): solves with G + z I by Cholesky
    (``shifted_solve``), traces of resolvents from the Cholesky factor (``prior_weight_gram``),
    and the symmetric square roots (G + z I)^{+-1/2} by a coupled Newton-Schulz iteration
    (``shifted_roots``), i.e. GEMMs. A batched 40 x 40 ``eigh`` costs about 10 Cholesky
    factorisations or 60 matrix products on a CPU, and it syncs with the host on a GPU.

  Functions of ``G + z I`` are symmetric (no rotation), so the square-root transforms are the
  symmetric ones.

Degenerate linear algebra (documented fallbacks, never an exception from inside torch):

* a trajectory whose G is non-finite (a diverged forecast) gets an identity (eigenbasis route) or
  zero (Gram route) in place of G, and NaN results, so the cycle engine flags it as diverged;
* eigenvalues are clamped at 0 (G is PSD; rounding may give -1e-15);
* scalar/vector Newton iterations run for every trajectory in lock-step with a per-trajectory
  stopping rule; a trajectory whose iterate ends non-finite or out of its domain (l1 <= 0) falls
  back to no inflation (l1 = 1, i.e. the ETKF), see ``newton_dual`` and ``newton_primal``.

Host synchronisation: on the CPU the Newton loops test their stopping rule at every iteration,
the Newton-Schulz iteration count is read from the batch's condition bound and the moment route
redoes its few out-of-range rows; on other devices the loops test only every ``SYNC_EVERY``
iterations (a trajectory that has stopped is frozen by a mask, so the results are the same),
Newton-Schulz runs a fixed count (``NS_DEVICE_KAPPA``) and the primal Newton uses Cholesky solves
for every row: no host sync in any inner loop.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

#: on a GPU, Newton loops test whether every trajectory has stopped only every SYNC_EVERY
#: iterations (each test is a host synchronisation); on the CPU they test at every iteration
SYNC_EVERY = 4
#: False: the CPU takes the device (GPU) code paths too (for the tests of those paths)
HOST_SHORTCUTS = True


def on_host(t: Tensor) -> bool:
    """Whether t lives where a host sync is free (the CPU), so data-dependent shortcuts pay."""
    return HOST_SHORTCUTS and t.device.type == "cpu"


def sync_every(t: Tensor) -> int:
    """Iterations between two stopping tests of a batched loop on t's device."""
    return 1 if on_host(t) else SYNC_EVERY


def matvec(M: Tensor, v: Tensor) -> Tensor:
    """M v for M (B, n, m), v (B, m)."""
    return (M @ v.unsqueeze(-1)).squeeze(-1)


def centre(E: Tensor) -> tuple[Tensor, Tensor]:
    """(mean (B, N_x), anomalies (B, N, N_x))."""
    mu = E.mean(-2)
    return mu, E - mu.unsqueeze(-2)


def normalised_obs(E: Tensor, y: Tensor, mask: Tensor,
                   sigma: float) -> tuple[Tensor, Tensor, Tensor]:
    """(mean, Y, dy) of ensemble E for H = site selection `mask`, R = sigma^2 I."""
    mu, A = centre(E)
    m = mask.to(E.dtype)
    Y = A * (m / sigma).unsqueeze(-2)
    dy = (y - mu) * m / sigma
    return mu, Y, dy


def eig_gram(Y: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Eigendecomposition of G = Y Y^T per trajectory: (lam (B, N) >= 0, V (B, N, N), ok (B,))."""
    G = Y @ Y.transpose(-1, -2)
    ok = torch.isfinite(G).flatten(-2).all(-1)
    if not on_host(G) or not bool(ok.all()):  # the test is a host sync: CPU only
        eye = torch.eye(G.shape[-1], dtype=G.dtype, device=G.device)
        G = torch.where(ok[:, None, None], G, eye)
    lam, V = torch.linalg.eigh(G)  # reads the lower triangle only: G need not be symmetrised
    return lam.clamp_min(0.0), V, ok


def sym_fun(V: Tensor, d: Tensor) -> Tensor:
    """V diag(d) V^T, batched."""
    return (V * d.unsqueeze(-2)) @ V.transpose(-1, -2)


def to_eig(V: Tensor, v: Tensor) -> Tensor:
    """V^T v for v (B, N)."""
    return (V.transpose(-1, -2) @ v.unsqueeze(-1)).squeeze(-1)


def from_eig(V: Tensor, u: Tensor) -> Tensor:
    """V u for u (B, N)."""
    return (V @ u.unsqueeze(-1)).squeeze(-1)


def hyperprior_coeffs(lam: Tensor, n: int, xn: float = 1.0, g: float = 0.0,
                      dirac: bool = False, mode_correction: bool = True) -> tuple[Tensor, Tensor]:
    """Hyperprior constants (eN, cL) of the dual cost eN / l1^2 + cL ln l1^2, per trajectory.

    lam (B, N): eigenvalues of Y Y^T; returns eN, cL (B,). The ensemble-space prior is
    p(w) ~ (eps + |w|^2)^(-(N-1) cL / 2) with eN = eps (docs/dirac_jeffreys.md):

    * Jeffreys hyperprior on (x_b, B) (Bocquet 2011, Eq. 17-20): eps = (N+1)/N (the mean is
      unknown), cL = (N+g)/(N-1).
    * Dirac-Jeffreys (``dirac=True``): a Dirac on the mean at the ensemble mean and the Jeffreys
      posterior of B: eps = 1, cL = (N+g)/(N-1) unchanged. Checked against a brute-force
      marginalisation (tests/test_dirac_jeffreys.py).

    Mode correction (``mode_correction=True``; Bocquet, Raanes & Hannart 2015, Eq. 36 as quoted
    by DAPPER): with a prior weight I_KH in [0, 1], eN / mc and cL * mc with
    mc = sqrt((eN/cL)^I_KH), so that the prior mode of l1^2 is (eN/cL)^(1 - I_KH) and tends to 1
    where the observations carry no information. Jeffreys: DAPPER 1.8.1's weight
    I_KH = mean_i (N-1)/(lam_i + N-1) (reproduces its test vectors). Dirac-Jeffreys: the trace
    weight I_KH = 1 / (1 + tr(Y Y^T)/(N-1)) (DAPPER's commented alternative); DAPPER's weight is
    >= 0.92 at every forcing 4..12 and would undo the variant (measured in
    docs/dirac_jeffreys.md). Then both are multiplied by xN.
    """
    i_kh = prior_weight(lam, n, dirac) if mode_correction else None
    return hyperprior_from_weight(i_kh, lam[..., 0], n, xn, g, dirac)


def prior_weight(lam: Tensor, n: int, dirac: bool) -> Tensor:
    """The mode correction's prior weight I_KH (B,) from the eigenvalues lam (B, N) of Y Y^T:
    Jeffreys mean_i (N-1)/(lam_i + N-1), Dirac-Jeffreys 1 / (1 + sum_i lam_i / (N-1))."""
    n1 = n - 1
    if dirac:
        return 1.0 / (1.0 + lam.sum(-1) / n1)
    return (n1 / (lam + n1)).mean(-1)


def hyperprior_from_weight(i_kh: Tensor | None, like: Tensor, n: int, xn: float = 1.0,
                           g: float = 0.0, dirac: bool = False) -> tuple[Tensor, Tensor]:
    """(eN, cL) (B,) of `hyperprior_coeffs` given the prior weight I_KH (B,) (None: no mode
    correction); `like` (B,) gives the shape, dtype and device."""
    ones = torch.ones_like(like)
    eN = ones * (1.0 if dirac else (n + 1) / n)
    cL = ones * ((n + g) / (n - 1))
    if i_kh is not None:
        mc = torch.sqrt((eN / cL) ** i_kh)
        eN, cL = eN / mc, cL * mc
    return eN * xn, cL * xn


def zeta_a(eN: Tensor, cL: Tensor, w2: Tensor, n: int) -> Tensor:
    """zeta_a = (N-1) cL / (eN + |w|^2) = (N-1) / pre-inflation^2 at w (Bocquet & Sakov 2012)."""
    return (n - 1) * cL / (eN + w2)


def newton_dual(b2: Tensor, lam: Tensor, eN: Tensor, cL: Tensor, n: int,
                xtol: float = 1e-4, ytol: float = 1e-7, max_iter: int = 100) -> Tensor:
    """Inflation l1 (B,) minimising the EnKF-N dual cost (Bocquet 2011 Eq. 33; BRH15 Eq. 27)

        J(l1) = sum_i du_i^2 / (l1^2 s_i^2 + N-1) + eN / l1^2 + cL ln l1^2,

    written with b2_i = s_i^2 du_i^2 = (v_i^T Y dy)^2 and lam_i = s_i^2 so no division by s_i is
    needed. Newton on J'(l1) = 0 from l1 = 1, batched: a trajectory stops when |J'| <= ytol or
    |step| <= xtol (DAPPER's defaults) or after max_iter steps. Fallback: l1 = 1 where the
    iterate is non-finite or <= 0.
    """
    n1 = n - 1
    l1 = torch.ones_like(eN)

    def jp(l1):
        den = (l1 * l1).unsqueeze(-1) * lam + n1
        return (-2 * l1 * (b2 / den**2).sum(-1) - 2 * eN / l1**3 + 2 * cL / l1)

    def jpp(l1):
        den = (l1 * l1).unsqueeze(-1) * lam + n1
        return (8 * l1**2 * (lam * b2 / den**3).sum(-1) + 6 * eN / l1**4 - 2 * cL / l1**2)

    j = jp(l1)
    active = j.abs() > ytol
    every = sync_every(l1)
    for it in range(max_iter):
        if (it + 1) % every == 0 and not bool(active.any()):
            break
        dx = j / jpp(l1)
        l1 = torch.where(active, l1 - dx, l1)
        j = jp(l1)
        active = active & (j.abs() > ytol) & (dx.abs() > xtol)
    bad = ~torch.isfinite(l1) | (l1 <= 0)
    return torch.where(bad, torch.ones_like(l1), l1)


def newton_primal(b: Tensor, lam: Tensor, eN: Tensor, cL: Tensor, n: int,
                  xtol: float = 1e-4, ytol: float = 1e-7, max_iter: int = 100) -> Tensor:
    """Inflation l1 (B,) from the linearised primal EnKF-N (Bocquet 2011 Eq. 26; Bocquet & Sakov
    2012 Eq. 24-28), in the eigenbasis of G (u = V^T w, b = V^T Y dy):

        grad J(u) = -(b - lam * u) + zeta_a(|u|^2) u,   approximate Hessian lam + zeta_a(|u|^2)

    (the radial-angular cross term dropped, DAPPER's Hess=False). Newton from u = 0 with DAPPER's
    stopping rule (|grad| <= ytol or |step| <= xtol, norms over the N components), batched;
    l1 = sqrt((N-1) / zeta_a(u_a)). Fallback: u = 0 where the iterate is non-finite.
    """
    u = torch.zeros_like(b)

    def grad(u):
        za = zeta_a(eN, cL, (u * u).sum(-1), n)
        return -(b - lam * u) + za.unsqueeze(-1) * u, za

    j, za = grad(u)
    active = j.norm(dim=-1) > ytol
    every = sync_every(u)
    for it in range(max_iter):
        if (it + 1) % every == 0 and not bool(active.any()):
            break
        dx = j / (lam + za.unsqueeze(-1))
        u = torch.where(active.unsqueeze(-1), u - dx, u)
        j, za = grad(u)
        active = active & (j.norm(dim=-1) > ytol) & (dx.norm(dim=-1) > xtol)
    u = torch.where(torch.isfinite(u).all(-1, keepdim=True), u, torch.zeros_like(u))
    za = zeta_a(eN, cL, (u * u).sum(-1), n)
    return torch.sqrt((n - 1) / za)


def sqrt_update(mu: Tensor, A: Tensor, V: Tensor, lam: Tensor, b: Tensor, l1: Tensor | float,
                ok: Tensor) -> Tensor:
    """Symmetric square-root (ETKF) analysis of the ensemble with prior anomalies inflated by l1:

        Pw = (l1^2 G + (N-1) I)^{-1},  w = l1 Pw Y dy,  T = sqrt(N-1) (l1^2 G + (N-1) I)^{-1/2},
        E^a = mean + (w^T + T) (l1 A)      (Hunt et al. 2007 Eq. 20-24 with inflation).

    ok (B,) marks trajectories with a finite G; the others get NaN.
    """
    n = A.shape[-2]
    n1 = n - 1
    l1 = torch.as_tensor(l1, dtype=A.dtype, device=A.device)
    if l1.dim() == 0:
        l1 = l1.expand(A.shape[0])
    l1sq = (l1 * l1).unsqueeze(-1)
    d = l1sq * lam + n1
    w = from_eig(V, l1.unsqueeze(-1) * b / d)
    T = sym_fun(V, math.sqrt(n1) * d.rsqrt())
    La = l1[:, None, None] * A
    Ea = mu.unsqueeze(-2) + (w.unsqueeze(-2) + T) @ La
    return torch.where(ok[:, None, None], Ea, torch.full_like(Ea, float("nan")))


# --- Gram route: no eigendecomposition -----------------------------------------------------


def gram(Y: Tensor) -> tuple[Tensor, Tensor]:
    """G = Y Y^T (B, N, N) and ok (B,), False where G is non-finite (NaN / inf propagate into
    the sum, so one reduction tells). Non-finite rows are left as they are: every routine below
    returns NaN for them without raising, and the caller sets their analysis to NaN."""
    G = Y @ Y.transpose(-1, -2)
    return G, torch.isfinite(G.sum((-2, -1)))


def shift(G: Tensor, z: Tensor) -> Tensor:
    """G + z I for G (B, N, N) and z (B,)."""
    M = G.clone()
    M.diagonal(dim1=-2, dim2=-1).add_(z.unsqueeze(-1))
    return M


def shifted_solve(G: Tensor, z: Tensor, v: Tensor) -> Tensor:
    """(G + z I)^{-1} v for v (B, N) by Cholesky; NaN where the factorisation fails (a shift that
    leaves G + z I numerically not positive definite)."""
    L, info = torch.linalg.cholesky_ex(shift(G, z))
    x = torch.cholesky_solve(v.unsqueeze(-1), L).squeeze(-1)
    return torch.where((info == 0).unsqueeze(-1), x, torch.full_like(x, float("nan")))


def _shifted_cholesky_inverse(G: Tensor, c: float) -> tuple[Tensor, Tensor]:
    """(L^{-1} (B, N, N), ok (B,)) for the Cholesky factor L L^T = G + c I; ok is False where
    the factorisation failed."""
    eye = torch.eye(G.shape[-1], dtype=G.dtype, device=G.device)
    L, info = torch.linalg.cholesky_ex(shift(G, torch.full_like(G[:, 0, 0], c)))
    return torch.linalg.solve_triangular(L, eye.expand_as(L), upper=False), info == 0


def scaled_resolvent(G: Tensor, c: float) -> Tensor:
    """Xs = c (G + c I)^{-1} (B, N, N), spectrum in (0, 1] for G PSD, by one Cholesky
    factorisation L L^T = G + c I: Xs = c L^{-T} L^{-1}. NaN rows where G is not finite."""
    Linv, ok = _shifted_cholesky_inverse(G, c)
    Xs = c * (Linv.transpose(-1, -2) @ Linv)
    return torch.where(ok[:, None, None], Xs, torch.full_like(Xs, float("nan")))


def prior_weight_gram(G: Tensor, n: int, dirac: bool, Xs: Tensor | None = None) -> Tensor:
    """`prior_weight` from G = Y Y^T (B, N, N) without its eigenvalues:

        Jeffreys:        I_KH = (1/N) tr((N-1) (G + (N-1) I)^{-1}) = tr(Xs) / N,
        Dirac-Jeffreys:  I_KH = 1 / (1 + tr(G) / (N-1)),

    (sum_i c / (lam_i + c) = tr(c (G + c I)^{-1})), Xs = `scaled_resolvent(G, N-1)` if given;
    else the trace alone, tr((G + c I)^{-1}) = |L^{-1}|_F^2 with L L^T = G + c I (no product;
    NaN where G is not finite)."""
    n1 = n - 1
    if dirac:
        return 1.0 / (1.0 + G.diagonal(dim1=-2, dim2=-1).sum(-1) / n1)
    if Xs is not None:
        return Xs.diagonal(dim1=-2, dim2=-1).sum(-1) / n
    Linv, ok = _shifted_cholesky_inverse(G, n1)
    tr = n1 * (Linv * Linv).sum((-2, -1)) / n
    return torch.where(ok, tr, torch.full_like(tr, float("nan")))


def krylov_moments(Xs: Tensor, v: Tensor, J: int) -> Tensor:
    """Moments m_k = v^T Xs^k v, k = 0..2J (B, 2J+1), from the J products v_j = Xs^j v:
    m_{2j} = v_j . v_j and m_{2j+1} = v_j . v_{j+1}."""
    vs = [v]
    for _ in range(J):
        vs.append(matvec(Xs, vs[-1]))
    V = torch.stack(vs, -2)  # (B, J+1, N)
    even = (V * V).sum(-1)
    odd = (V[:, :-1] * V[:, 1:]).sum(-1)
    m = torch.empty(V.shape[0], 2 * J + 1, dtype=V.dtype, device=V.device)
    m[:, 0::2], m[:, 1::2] = even, odd
    return m


#: Krylov products per dtype for the moment route, and the largest |1 - z / (N-1)| (shift
#: ratio r) at which its truncated series are exact to rounding: the resolvent series converge
#: like r^k (terms k r^k, k <= 2J), so r <= R_MAX keeps the neglected terms below ~1e-15 in
#: float64 (J = 16) and ~1e-7 in float32 (J = 8)
MOMENT_TERMS = {torch.float64: (16, 0.3), torch.float32: (8, 0.3)}


def _powers(d: Tensor, k: int) -> Tensor:
    """(B, k): d^0 .. d^(k-1)."""
    p = d.unsqueeze(-1).expand(*d.shape, k).clone()
    p[..., 0] = 1.0
    return p.cumprod(-1)


def newton_primal_moments(m: Tensor, n: int, eN: Tensor, cL: Tensor, r_max: float,
                          xtol: float = 1e-4, ytol: float = 1e-7,
                          max_iter: int = 100) -> tuple[Tensor, Tensor, Tensor]:
    """`newton_primal`'s iterates without any matrix: with the moments m_k = gy^T Xs^k gy of
    Xs = (N-1)(G + (N-1) I)^{-1} (`krylov_moments`) and R(z) = (G + z I)^{-1}:

        the iterate is u_{k+1} = R(z_k) gy with z_k = zeta_a(|u_k|^2) (u_0 = 0),
        R(z) = Xs (I - d Xs)^{-1} / (N-1),  d = 1 - z / (N-1)        (resolvent shift),
        |u_{k+1}|^2 = (N-1)^{-2} sum_k (k+1) d^k m_{k+2},
        grad at u_{k+1} = (zeta_a(|u_{k+1}|^2) - z_k) u_{k+1},
        step  u_k - u_{k+1} = (z_k - z_{k-1}) R(z_{k-1}) R(z_k) gy,
            |step|^2 = (z_k - z_{k-1})^2 (N-1)^{-4} sum_{a,b} (a+1)(b+1) d'^a d^b m_{a+b+4},

    so each iteration is a few operations on (B, 2J) numbers. The series are truncated at the
    available moments; exact to rounding while |d| <= r_max. Returns (l1, zeta_a at the last
    iterate, exact (B,) bool): rows that needed |d| > r_max must be redone
    (`newton_primal_gram`)."""
    n1 = n - 1
    K = m.shape[-1] - 2  # terms of the |u|^2 series: m_2 .. m_{2J}
    Kb = (m.shape[-1] - 4) // 2 + 1  # Hankel block for the step: m_{a+b+4}, a, b < Kb
    k1 = torch.arange(1, K + 1, dtype=m.dtype, device=m.device)  # (k+1)
    kb1 = k1[:Kb]
    idx = torch.arange(Kb, device=m.device)
    hank = m[:, (idx[:, None] + idx[None, :] + 4)]  # (B, Kb, Kb)
    mu2 = m[:, 2:2 + K]

    def u2_at(d):
        return (k1 * _powers(d, K) * mu2).sum(-1) / n1**2

    s = zeta_a(eN, cL, torch.zeros_like(eN), n)  # zeta at u_0 = 0
    u2 = torch.zeros_like(eN)
    j = m[:, 0].clamp_min(0).sqrt()  # |grad at 0| = |gy|
    active = j > ytol
    exact = torch.ones_like(active)
    alpha = None  # (a+1) d'^a of the shift that made the current iterate (None: u = 0)
    s_prev = s
    every = sync_every(m)
    for it in range(max_iter):
        if (it + 1) % every == 0 and not bool(active.any()):
            break
        d = 1.0 - s / n1
        exact = exact & ~(active & (d.abs() > r_max))
        u2n = u2_at(d)
        zn = zeta_a(eN, cL, u2n, n)
        jn = (zn - s).abs() * u2n.sqrt()
        beta = kb1 * _powers(d, Kb)
        if alpha is None:  # u_0 = 0: the step is the new iterate
            dx = u2n.sqrt()
        else:
            bil = (alpha.unsqueeze(-2) @ hank @ beta.unsqueeze(-1)).reshape(-1)
            dx = (s - s_prev).abs() * bil.clamp_min(0).sqrt() / n1**2
        # a row that has stopped never restarts: only u2 and s (its result) must be frozen
        u2 = torch.where(active, u2n, u2)
        s_prev, alpha = s, beta
        s = torch.where(active, zn, s)
        active = active & (jn > ytol) & (dx > xtol)
    ok = torch.isfinite(s) & (s > 0)
    exact = exact & ok
    return torch.sqrt(n1 / s), s, exact


def primal_inflation(G: Tensor, gy: Tensor, eN: Tensor, cL: Tensor, n: int,
                     Xs: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """(l1, zeta_a) (B,) of the primal EnKF-N (`newton_primal`'s iterates) without an
    eigendecomposition. On the CPU by the moment route (`newton_primal_moments`, Xs =
    `scaled_resolvent(G, N-1)` reused if given), and the few rows whose shifts left the range of
    its series (large inflation) redone by Cholesky solves (`newton_primal_gram`); on other
    devices by Cholesky solves for all rows (no data-dependent row selection, no host sync
    besides the loop's stopping test every SYNC_EVERY iterations)."""
    if not on_host(G) or G.dtype not in MOMENT_TERMS:
        return newton_primal_gram(G, gy, eN, cL, n)
    J, r_max = MOMENT_TERMS[G.dtype]
    if Xs is None:
        Xs = scaled_resolvent(G, n - 1)
    l1, z, exact = newton_primal_moments(krylov_moments(Xs, gy, J), n, eN, cL, r_max)
    redo = ~exact & torch.isfinite(Xs.sum((-2, -1)))
    if bool(redo.any()):
        rows = torch.nonzero(redo).squeeze(-1)
        l1r, zr = newton_primal_gram(G[rows], gy[rows], eN[rows], cL[rows], n)
        l1, z = l1.index_put((rows,), l1r), z.index_put((rows,), zr)
    return l1, z


def newton_primal_gram(G: Tensor, gy: Tensor, eN: Tensor, cL: Tensor, n: int,
                       xtol: float = 1e-4, ytol: float = 1e-7,
                       max_iter: int = 100) -> tuple[Tensor, Tensor]:
    """`newton_primal` in the members' basis (w = V u, gy = Y dy = V b): the same iterates

        grad J(w) = G w - gy + zeta_a(|w|^2) w,   w <- w - (G + zeta_a(|w|^2) I)^{-1} grad J(w),

    one Cholesky factorisation per iteration instead of one eigendecomposition per analysis
    (norms are basis-free, so the stopping rule and the fallback are unchanged).
    Returns (l1 (B,), zeta_a(w_final) (B,)) with l1 = sqrt((N-1) / zeta_a).
    """
    w = torch.zeros_like(gy)

    def grad(w):
        za = zeta_a(eN, cL, (w * w).sum(-1), n)
        return matvec(G, w) - gy + za.unsqueeze(-1) * w, za

    j, za = grad(w)
    active = j.norm(dim=-1) > ytol
    every = sync_every(w)
    for it in range(max_iter):
        if (it + 1) % every == 0 and not bool(active.any()):
            break
        dx = shifted_solve(G, za, j)
        w = torch.where(active.unsqueeze(-1), w - dx, w)
        j, za = grad(w)
        active = active & (j.norm(dim=-1) > ytol) & (dx.norm(dim=-1) > xtol)
    w = torch.where(torch.isfinite(w).all(-1, keepdim=True), w, torch.zeros_like(w))
    za = zeta_a(eN, cL, (w * w).sum(-1), n)
    return torch.sqrt((n - 1) / za), za


def newton_dual_gram(G: Tensor, gy: Tensor, eN: Tensor, cL: Tensor, n: int,
                     xtol: float = 1e-4, ytol: float = 1e-7, max_iter: int = 100) -> Tensor:
    """`newton_dual` without the eigenbasis: with D = l1^2 G + (N-1) I, s = D^{-1} gy and
    t = D^{-1} s,

        sum_i b2_i / den_i^2 = |s|^2,   sum_i lam_i b2_i / den_i^3 = s^T G t,

    so J'(l1) and J''(l1) (as in `newton_dual`) cost one Cholesky factorisation and two solves
    per iteration. Same stopping rule and fallback (l1 = 1)."""
    n1 = n - 1
    l1 = torch.ones_like(eN)
    eye = torch.eye(G.shape[-1], dtype=G.dtype, device=G.device)

    def derivs(l1):
        L, info = torch.linalg.cholesky_ex((l1 * l1)[:, None, None] * G + n1 * eye)
        s = torch.cholesky_solve(gy.unsqueeze(-1), L)
        t = torch.cholesky_solve(s, L)
        s2 = (s * s).sum((-2, -1))
        sgt = (s * (G @ t)).sum((-2, -1))
        jp = -2 * l1 * s2 - 2 * eN / l1**3 + 2 * cL / l1
        jpp = 8 * l1**2 * sgt + 6 * eN / l1**4 - 2 * cL / l1**2
        bad = info != 0
        return jp.masked_fill(bad, float("nan")), jpp

    j, jpp = derivs(l1)
    active = j.abs() > ytol
    every = sync_every(l1)
    for it in range(max_iter):
        if (it + 1) % every == 0 and not bool(active.any()):
            break
        dx = j / jpp
        l1 = torch.where(active, l1 - dx, l1)
        j, jpp = derivs(l1)
        active = active & (j.abs() > ytol) & (dx.abs() > xtol)
    bad = ~torch.isfinite(l1) | (l1 <= 0)
    return torch.where(bad, torch.ones_like(l1), l1)


#: Newton-Schulz stops when the worst eigenvalue error of Z_k Y_k (exact arithmetic) is below
#: this: 1e-12 in float64 (the roots then agree with eigh's to ~1e-13), 1e-6 in float32
NS_TOL = {torch.float64: 1e-12, torch.float32: 1e-6, torch.float16: 1e-3, torch.bfloat16: 1e-2}


#: on GPUs Newton-Schulz runs the iterations that this condition bound needs (12 in float64,
#: 11 in float32), whatever the data: a fixed count needs no host sync
NS_DEVICE_KAPPA = 1e6


def newton_schulz_coefficients(kappa: float, tol: float,
                               max_iter: int = 60) -> list[tuple[float, float]]:
    """(a_k, b_k) of the scaled Newton-Schulz steps P_k = a_k I + b_k Z_k Y_k that bring every
    eigenvalue of Z_k Y_k to 1 within tol when the spectrum of M lies in [lo, hi] with
    hi / lo <= kappa and the iteration starts from Y_0 = M / hi (exact arithmetic).

    In s = sqrt(eigenvalue of Z_k Y_k) a step is the odd cubic s -> s (a_k + b_k s^2), the
    sign-function form of the iteration. Each step is the cubic that best approximates 1 in
    the max norm on the current interval [l, u] of s (the equioscillating scaled
    Newton-Schulz step, as in Chen & Chow 2014 and the "Polar Express" of Amsel et al. 2025):
    with r = l / u, m = sqrt((1 + r + r^2) / 3) and g(t) = t (3 - t^2) / 2 the step is
    s -> K g(s / (u m)), K = 2 / (1 + g(1 / m)), mapping [l, u] onto [2 - K, K]. Far from
    convergence s grows ~5x per step (the unscaled step (3 - x) / 2: 1.5x); near it the step
    is the unscaled one, quadratically convergent. Every iterate is a polynomial in M, so the
    roots are the symmetric ones.
    """
    lo, hi = (math.sqrt(1.0 / kappa) if math.isfinite(kappa) and kappa > 0 else 0.0), 1.0
    out = []
    for _ in range(max_iter):
        if max(1.0 - lo * lo, hi * hi - 1.0) <= tol:
            return out
        r = lo / hi
        m = math.sqrt((1.0 + r + r * r) / 3.0)
        t = 1.0 / m
        k = 2.0 / (1.0 + 0.5 * t * (3.0 - t * t))
        out.append((1.5 * k / (hi * m), -0.5 * k / (hi * m) ** 3))
        lo, hi = 2.0 - k, k
    return out


def newton_schulz_iterations(kappa: float, tol: float, max_iter: int = 60) -> int:
    """Iterations of `newton_schulz_sqrt` for the condition bound kappa and tolerance tol."""
    return len(newton_schulz_coefficients(kappa, tol, max_iter))


def newton_schulz_sqrt(M: Tensor, lo: Tensor, hi: Tensor,
                       want_sqrt: bool = True) -> tuple[Tensor | None, Tensor]:
    """(M^{1/2}, M^{-1/2}) of symmetric positive definite M (B, n, n) whose eigenvalues lie in
    [lo, hi] (B,), lo > 0, by the coupled Newton-Schulz iteration (Higham 2008, Eq. 6.35;
    stable, matrix products only) with the scaled steps of `newton_schulz_coefficients`:

        Y_0 = M / hi, Z_0 = I,  P_k = a_k I + b_k Z_k Y_k,  Y_{k+1} = Y_k P_k,  Z_{k+1} = P_k Z_k,

    Y_k -> (M/hi)^{1/2}, Z_k -> (M/hi)^{-1/2}. The steps are those of the batch's largest
    hi / lo at the dtype's NS_TOL on the CPU; on other devices (where reading that number is a
    host sync) those of hi / lo = NS_DEVICE_KAPPA, i.e. rows with a larger bound are less
    accurate. ``want_sqrt=False`` skips the last update of Y and returns (None, M^{-1/2}).
    (Y is carried as b_k Y_k, so that P_k is one product and a diagonal shift.)
    """
    tol = NS_TOL.get(M.dtype, 1e-12)
    if not on_host(M):
        kappa = NS_DEVICE_KAPPA  # fixed: no host sync
    else:
        kap = hi / lo
        kap = torch.where(torch.isfinite(kap), kap, torch.ones_like(kap))
        kappa = float(kap.max()) if M.shape[0] else 1.0
    steps = newton_schulz_coefficients(kappa, tol)
    Z = None  # Z_0 = I, never formed
    if steps:
        Yb = M * (steps[0][1] / hi)[:, None, None]  # b_0 Y_0
    for k, (a, b) in enumerate(steps):
        P = Yb.clone() if Z is None else Z @ Yb
        P.diagonal(dim1=-2, dim2=-1).add_(a)
        Z = P if Z is None else P @ Z
        if k + 1 < len(steps):
            Yb = (Yb @ P).mul_(steps[k + 1][1] / b)
        elif want_sqrt:
            Yb = (Yb @ P).mul_(1.0 / b)
    sc = hi.sqrt()[:, None, None]
    if Z is None:
        Z = torch.eye(M.shape[-1], dtype=M.dtype, device=M.device).expand_as(M)
        return (M / hi[:, None, None] * sc if want_sqrt else None), Z / sc
    return (Yb * sc if want_sqrt else None), Z / sc


def shifted_roots(G: Tensor, z: Tensor, want_sqrt: bool = True) -> tuple[Tensor | None, Tensor]:
    """((G + z I)^{1/2}, (G + z I)^{-1/2}) for G = Y Y^T (B, N, N) PSD and z (B,) > 0, by
    `newton_schulz_sqrt` with the spectrum bounds [z, z + |G|_F] (|G|_F >= lam_max(G); the
    tighter (sum_i lam_i^4)^{1/4} = |G^2|_F^{1/2} costs a product and, measured on L96
    ensembles, rarely saves an iteration: the batch's worst trajectory sets the count)."""
    fro = G.flatten(-2).norm(dim=-1)
    return newton_schulz_sqrt(shift(G, z), z, z + fro, want_sqrt)

def sqrt_update_gram(mu: Tensor, A: Tensor, G: Tensor, gy: Tensor, z: Tensor,
                     ok: Tensor) -> Tensor:
    """`sqrt_update` written with z = (N-1) / l1^2 and no eigenbasis: since
    l1^2 G + (N-1) I = l1^2 (G + z I),

        E^a = mean + ((G + z I)^{-1} Y dy)^T A + sqrt(N-1) (G + z I)^{-1/2} A,

    the inverse root by Newton-Schulz and (G + z I)^{-1} = ((G + z I)^{-1/2})^2.
    ok (B,) marks trajectories with a finite G; the others get NaN."""
    n1 = A.shape[-2] - 1
    _, Z = shifted_roots(G, z, want_sqrt=False)
    w = matvec(Z, matvec(Z, gy))
    Ea = mu.unsqueeze(-2) + torch.add(w.unsqueeze(-2), Z, alpha=math.sqrt(n1)) @ A
    return torch.where(ok[:, None, None], Ea, torch.full_like(Ea, float("nan")))
