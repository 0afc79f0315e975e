"""The cycle engine, the test-RMSE protocol, paired twins, user observation files."""

import torch

from danlab import FreeRun, Lorenz96, ObservationConfig, ObservationOnly, make_twin, run_filter
from danlab.filters.base import SingleStateFilter
from danlab.obsfile import read_observations, twin_to_dataset


def test_same_seed_same_twin():
    m = Lorenz96()
    a = make_twin(m, ObservationConfig("random"), 40, 0.05, 3, 20, seed=5)
    b = make_twin(m, ObservationConfig("random"), 40, 0.05, 3, 20, seed=5)
    c = make_twin(m, ObservationConfig("random"), 40, 0.05, 3, 20, seed=6)
    assert torch.equal(a.y, b.y) and torch.equal(a.truth, b.truth) and torch.equal(a.x0, b.x0)
    assert not torch.equal(a.y, c.y)
    assert torch.allclose(a.truth[1], m.forecast(a.truth[0], 0.05))


def test_observation_only_rmse_is_sigma():
    m = Lorenz96()
    twin = make_twin(m, ObservationConfig("full", 0.5), 40, 0.05, 8, 300, seed=1)
    r = run_filter(ObservationOnly(), twin, m, spinup=50)
    assert abs(r.rmse - 0.5) < 0.01
    assert r.rmse_per_cycle.shape == (300, 8) and r.n_diverged == 0
    free = run_filter(FreeRun(), twin, m, spinup=100)
    # a free run loses track: its 50-cycle RMSE reaches the climatological spread (3.6)
    assert free.n_diverged == 8 and (free.diverged_at >= 49).all()
    assert (free.diverged_at < 150).all() and free.label().endswith("(8/8 diverged)")


class _Explodes(SingleStateFilter):
    """Trajectory 1 becomes NaN at cycle 5; the others follow the observations."""

    name = "explodes"

    def __init__(self):
        self.k = 0

    def analysis(self, state, y, mask, sigma, **kw):
        self.k += 1
        out = torch.where(mask, y, state).clone()
        if self.k == 5:
            out[1] = float("nan")
        return out


def test_divergence_is_flagged_not_averaged():
    m = Lorenz96()
    twin = make_twin(m, ObservationConfig(), 40, 0.05, 4, 60, seed=2)
    r = run_filter(_Explodes(), twin, m, spinup=10)
    assert r.diverged.tolist() == [False, True, False, False]
    assert int(r.diverged_at[1]) == 4
    assert torch.isnan(r.rmse_per_trajectory[1])
    assert abs(r.rmse - 1.0) < 0.1  # the average of the three healthy ones
    assert torch.isfinite(r.rmse_per_cycle[:, 0]).all()


def test_user_observation_file_roundtrip(tmp_path):
    m = Lorenz96()
    twin = make_twin(m, ObservationConfig("alternate"), 12, 0.05, 2, 30, seed=3)
    ds = twin_to_dataset(twin)
    ds.to_netcdf(tmp_path / "obs.nc")
    back = read_observations(str(tmp_path / "obs.nc"))
    r1 = run_filter(ObservationOnly(), twin, m, spinup=5)
    r2 = run_filter(ObservationOnly(), back, m, spinup=5)
    assert r1.rmse == r2.rmse
    ds.drop_vars("truth").to_netcdf(tmp_path / "obs2.nc")
    r3 = run_filter(ObservationOnly(), read_observations(str(tmp_path / "obs2.nc")), m,
                    spinup=5, keep_analyses=True)
    assert r3.analyses.shape == (30, 2, 12)
