"""Dynamical models: batched, differentiable, device- and dtype-agnostic."""

from danlab.dynamics.lorenz96 import Lorenz96, lyapunov_exponents

__all__ = ["Lorenz96", "lyapunov_exponents"]
