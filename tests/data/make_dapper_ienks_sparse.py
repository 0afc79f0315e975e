"""Regenerate dapper_ienks_sparse.npz with DAPPER 1.8.1 (not a danlab dependency).

    python3.12 -m venv /tmp/dapper && /tmp/dapper/bin/pip install dapper==1.8.1
    /tmp/dapper/bin/python tests/data/make_dapper_ienks_sparse.py

One IEnKF-N analysis per case by DAPPER's own ``iEnKS_update`` with the settings of
``iEnKS('Sqrt', N, Lag=1, xN=1)`` (nIter=10, wtol=0, no bundle, no MDA), a fixed set of observed
sites (H = site selection, R = I) and DAPPER's L96 step (RK4, 0.05) as the model.
"""

from pathlib import Path
from types import SimpleNamespace

import numpy as np
from dapper.da_methods.variational import iEnKS_update
from dapper.mods.Lorenz96 import step

NX, MODEL_DT = 40, 0.05
rng = np.random.default_rng(20240611)


def forecast(E, dt):
    for _ in range(round(dt / MODEL_DT)):
        E = step(E, np.nan, MODEL_DT)
    return E


class _Stats:  # iEnKS_update records statistics; not needed here
    iters = SimpleNamespace(a={})
    infl = SimpleNamespace(a={})

    def assess(self, *args, **kwargs):
        pass


def analysis(E0, y_sites, sites, dt):
    hmm = SimpleNamespace(
        tseq=SimpleNamespace(cycle=lambda k: [(1, dt, dt)]),
        Dyn=lambda E, t, dt_: forecast(E, dt),
        Obs=lambda ko: (lambda E: E[..., sites]),
    )
    Es = iEnKS_update("Sqrt", E0, range(1, 2), hmm, _Stats(), 1.0, y_sites, (0, 1, 0.0),
                      np.eye(len(sites)), 1.0, False, (10, 0.0))
    return forecast(Es, dt)  # the smoothed ensemble at t0, propagated to the analysis time


x = forecast(8 + rng.standard_normal(NX), 100.0)  # onto the attractor
site_sets = {
    "alternate": np.arange(1, NX, 2),
    "random10": np.sort(rng.choice(NX, 10, replace=False)),
    "random3": np.sort(rng.choice(NX, 3, replace=False)),
}
# the cases kept in the file (the loop draws all 24 so that the random draws stay the same)
KEEP = ("N40_alternate_dt0.05_s1.0", "N40_random10_dt0.05_s1.0", "N20_random3_dt0.05_s0.5",
        "N40_alternate_dt0.3_s0.5", "N40_random10_dt0.3_s1.0", "N20_random10_dt0.3_s0.5")
out = {}
cases = []
for dt in (0.05, 0.3):
    for n in (20, 40):
        for name, sites in site_sets.items():
            for spread in (0.5, 1.0):
                x = forecast(x, 1.0)
                E0 = x + spread * rng.standard_normal((n, NX))
                truth = forecast(x, dt)
                mask = np.zeros(NX, dtype=bool)
                mask[sites] = True
                y = np.where(mask, truth + rng.standard_normal(NX), 0.0)
                case = f"N{n}_{name}_dt{dt}_s{spread}"
                if case not in KEEP:
                    continue
                case = "ienks_lag1_xN1_sqrt_" + case
                cases.append(case)
                out.update({f"{case}_E0": E0, f"{case}_y": y, f"{case}_mask": mask,
                            f"{case}_dt": np.float64(dt), f"{case}_truth": truth,
                            f"{case}_Ef_mean": forecast(E0, dt).mean(0),
                            f"{case}_Ea": analysis(E0, y[sites], sites, dt)})
np.savez(Path(__file__).with_name("dapper_ienks_sparse.npz"), cases=np.array(cases), **out)
print(len(cases), "cases")
