"""What a learned analysis operator has learned: P^a(x) (Eq. 12-13), the marginal gain
Gamma(x) (Eq. 9-10), its mean Gamma-bar and reduction Omega_r (Eq. 11, 21, App. G-H),
the nonlinearity ratio r(lambda) (Eq. 23), innovation histograms (Fig. 7) and the comparison
with the EnKF-N. Every function takes any callable a(x, zeta) on batched (..., N_x) tensors."""

from danlab.diagnostics.compare import EnKFComparison, compare_matrices, compare_with_enkf
from danlab.diagnostics.covariance import analysis_covariance, stein_regression
from danlab.diagnostics.gain import (
    MeanMarginalGain,
    marginal_gain,
    mean_marginal_gain,
    omega_from_gamma,
)
from danlab.diagnostics.nonlinearity import (
    DASamples,
    NonlinearityRatio,
    da_samples,
    innovation_histogram,
    nonlinearity_ratio,
)

__all__ = [
    "DASamples", "EnKFComparison", "NonlinearityRatio", "compare_matrices", "compare_with_enkf",
    "da_samples", "innovation_histogram", "nonlinearity_ratio",
    "MeanMarginalGain", "analysis_covariance", "marginal_gain", "mean_marginal_gain",
    "omega_from_gamma", "stein_regression",
]
