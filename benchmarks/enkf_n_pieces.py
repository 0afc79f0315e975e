"""Wall time of each step of one EnKF-N analysis (Gram route), per trajectory, on a realistic
ensemble (the forecast of the 30th cycle of an EnKF-N run), one thread:

    OMP_NUM_THREADS=1 PYTHONPATH=src python benchmarks/enkf_n_pieces.py 64 float32

L96 N_x = 40, F = 8, full observation, N = 40, dt = 0.05 (RK4 step 0.05, DAPPER's). Each step
is timed alone (50 repeats) with the inputs of the real analysis, so the steps do not add up
exactly to the whole analysis (which also pays its glue).
"""

import sys
import time

import torch
from _enkf_cycle import last_analysis_inputs

import danlab.filters._ensemble_space as es
from danlab import make_filter


def main(batch: int, dtype: torch.dtype, reps: int = 50) -> None:
    torch.set_num_threads(1)
    model, E, y, mask, sigma = last_analysis_inputs(batch, dtype)
    analysis = make_filter("enkf-n", members=40).analysis
    n = E.shape[-2]

    def per_trajectory(f) -> float:
        f()
        t = time.perf_counter()
        for _ in range(reps):
            f()
        return 1e6 * (time.perf_counter() - t) / (reps * batch)

    with torch.no_grad():
        mu, Y, dy = es.normalised_obs(E, y, mask, sigma)
        A = E - mu.unsqueeze(-2)
        G, ok = es.gram(Y)
        gy = es.matvec(Y, dy)
        Xs = es.scaled_resolvent(G, n - 1)
        eN, cL = es.hyperprior_from_weight(es.prior_weight_gram(G, n, False, Xs), mu[..., 0], n)
        terms, r_max = es.MOMENT_TERMS[dtype]
        m = es.krylov_moments(Xs, gy, terms)
        _, z = es.primal_inflation(G, gy, eN, cL, n, Xs)
        kappa = float(((z + G.flatten(-2).norm(dim=-1)) / z).max())
        rows = [
            ("whole analysis", lambda: analysis(E, y, mask, sigma)),
            ("forecast (eager)", lambda: model.forecast(E, 0.05)),
            ("mean, anomalies, normalised obs", lambda: es.normalised_obs(E, y, mask, sigma)),
            ("Gram matrix and Y dy", lambda: (es.gram(Y), es.matvec(Y, dy))),
            ("scaled resolvent (Cholesky)", lambda: es.scaled_resolvent(G, n - 1)),
            ("prior weight, hyperprior", lambda: es.hyperprior_from_weight(
                es.prior_weight_gram(G, n, False, Xs), mu[..., 0], n)),
            (f"Krylov moments ({terms} products)", lambda: es.krylov_moments(Xs, gy, terms)),
            ("primal Newton on the moments", lambda: es.newton_primal_moments(
                m, n, eN, cL, r_max)),
            (f"Newton-Schulz root ({es.newton_schulz_iterations(kappa, es.NS_TOL[dtype])} "
             f"steps, batch hi/lo {kappa:.1f})",
             lambda: es.shifted_roots(G, z, want_sqrt=False)),
            ("transform and update (root included)", lambda: es.sqrt_update_gram(
                mu, A, G, gy, z, ok)),
        ]
        name = str(dtype).replace("torch.", "")
        print(f"EnKF-N analysis, batch {batch}, {name}: µs per trajectory (wall, one thread)")
        for name, f in rows:
            print(f"| {name} | {per_trajectory(f):.1f} |")


if __name__ == "__main__":
    main(int(sys.argv[1]), getattr(torch, sys.argv[2]))
