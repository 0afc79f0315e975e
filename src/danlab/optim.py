"""Optimisers for DAN training: Adam (the paper's), or Muon on the convolution kernels.

Muon (Jordan et al. 2024; Liu et al. 2025, "Muon is scalable for LLM training") replaces the
update of a weight matrix by the orthogonal factor of its momentum (all singular values set to
1, by a Newton–Schulz iteration), so that every direction of the matrix moves at the same rate
instead of the few that dominate the gradient. A convolution kernel (out, in, k) is the matrix
(out, in·k) of the GEMM it performs. The update is scaled by 0.2·sqrt(max(out, in·k)), which
gives it the RMS of a typical Adam update, so the two share one learning rate and schedule.
The first and last layers and every vector (biases, α) stay with Adam, as in those papers.
(torch.optim.Muon takes 2-D parameters only, hence this small version for (out, in, k) kernels.)
"""

from __future__ import annotations

import torch

from danlab.errors import check

OPTIMIZERS = ("adam", "muon")

#: the quintic Newton–Schulz coefficients of Jordan et al.: they drive every singular value
#: of a normalised matrix into ~[0.7, 1.2] in five iterations (not exactly 1: enough for Muon)
NS_COEFFICIENTS = (3.4445, -4.7750, 2.0315)


def orthogonalise(g: torch.Tensor, steps: int = 5) -> torch.Tensor:
    """Approximate orthogonal factor U Vᵀ of each matrix g = U S Vᵀ of (..., m, n), by
    Newton–Schulz."""
    a, b, c = NS_COEFFICIENTS
    x = g / (torch.linalg.matrix_norm(g, keepdim=True) + 1e-7)  # singular values into [0, 1]
    tall = x.shape[-2] > x.shape[-1]
    if tall:
        x = x.mT
    for _ in range(steps):
        s = x @ x.mT
        x = a * x + (b * s + c * s @ s) @ x
    return x.mT if tall else x


class Muon(torch.optim.Optimizer):
    """Momentum (Nesterov) orthogonalised per weight tensor, viewed as (shape[0], rest)."""

    def __init__(self, params, lr: float = 3e-3, momentum: float = 0.95, ns_steps: int = 5):
        super().__init__(params, dict(lr=lr, momentum=momentum, ns_steps=ns_steps))

    @torch.no_grad()
    def step(self, closure=None):
        for group in self.param_groups:
            mu = group["momentum"]
            params = [p for p in group["params"] if p.grad is not None]
            for p in params:
                if "momentum_buffer" not in self.state[p]:
                    self.state[p]["momentum_buffer"] = torch.zeros_like(p)
            # kernels of one shape are orthogonalised together, as one batch of matrices
            for shape in dict.fromkeys(p.shape for p in params):
                same = [p for p in params if p.shape == shape]
                bufs = [self.state[p]["momentum_buffer"] for p in same]
                grads = [p.grad for p in same]
                torch._foreach_lerp_(bufs, grads, 1 - mu)
                g = torch.stack([gr.lerp(b, mu) for gr, b in zip(grads, bufs)])  # Nesterov
                u = orthogonalise(g.reshape(len(same), shape[0], -1), group["ns_steps"])
                scale = 0.2 * max(u.shape[-2:]) ** 0.5
                torch._foreach_add_(same, list(u.reshape(len(same), *shape).unbind()),
                                    alpha=-group["lr"] * scale)


class Optimizers:
    """Several optimisers over disjoint parameters, driven as one (the trainer sets every
    group's learning rate, steps, saves and loads them together)."""

    def __init__(self, *opts: torch.optim.Optimizer):
        self.opts = opts

    @property
    def param_groups(self) -> list[dict]:
        return [g for o in self.opts for g in o.param_groups]

    def zero_grad(self, set_to_none: bool = True) -> None:
        for o in self.opts:
            o.zero_grad(set_to_none=set_to_none)

    def step(self) -> None:
        for o in self.opts:
            o.step()

    def state_dict(self) -> dict:
        return {"optimizers": [o.state_dict() for o in self.opts]}

    def load_state_dict(self, state: dict) -> None:
        for o, s in zip(self.opts, state["optimizers"], strict=True):
            o.load_state_dict(s)


def make_optimizer(name: str, net: torch.nn.Module, lr: float):
    """Adam over every parameter, or Muon over the hidden convolution kernels and Adam over the
    rest (the lifting and output layers, biases, scalars)."""
    if name == "adam":
        return torch.optim.Adam(net.parameters(), lr=lr)
    kernels = hidden_kernels(net)
    check(bool(kernels), f"optimizer={name!r} is not allowed for this network: it has no hidden "
                         "convolution kernels; use adam")
    ids = {id(p) for p in kernels}
    rest = [p for p in net.parameters() if id(p) not in ids]
    return Optimizers(Muon(kernels, lr=lr), torch.optim.Adam(rest, lr=lr))


def hidden_kernels(net: torch.nn.Module) -> list[torch.Tensor]:
    """The weights of every convolution but the first and the last (in registration order)."""
    convs = [m.weight for m in net.modules() if isinstance(m, torch.nn.Conv1d)]
    return [w for w in convs[1:-1] if w.requires_grad]
