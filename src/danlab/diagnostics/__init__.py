"""What a learned analysis operator has learned: P^a(x) (Eq. 12-13), the marginal gain
Gamma(x) (Eq. 9-10), its mean Gamma-bar and reduction Omega_r (Eq. 11, 21, App. G-H),
the nonlinearity ratio r(lambda) (Eq. 23), innovation histograms (Fig. 7) and the comparison
with the EnKF-N. Every function takes any callable a(x, zeta) on batched (..., N_x) tensors."""

from danlab.diagnostics.covariance import analysis_covariance, stein_regression
from danlab.diagnostics.gain import (
    MeanMarginalGain,
    marginal_gain,
    mean_marginal_gain,
    omega_from_gamma,
)

__all__ = [
    "MeanMarginalGain", "analysis_covariance", "marginal_gain", "mean_marginal_gain",
    "omega_from_gamma", "stein_regression",
]
