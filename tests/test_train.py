"""Training through the cycle: learning, exact resume, NaN rollback, loading."""

import hashlib
import json

import pytest
import torch

from danlab.config import TrainConfig, preset
from danlab.errors import DanlabError
from danlab.train import BEST, CHECKPOINT, Stop, evaluate_run, load, load_checkpoint, train

TINY = dict(filters=8, blocks=1, n_r=128, s_b=16, n_iter=4, max_steps=24, time_budget=0.0,
            warmup_cycles=20, val_cycles=16, test_trajectories=2, test_cycles=120,
            test_spinup=40)


def quiet(*a):
    pass


def test_training_learns(tmp_path):
    cfg = preset("smoke", **{**TINY, "max_steps": 120, "filters": 16, "n_iter": 6})
    out = train(cfg, tmp_path, progress=False, log=quiet)
    # x^a = y (the initial operator) scores ~1.0; a few dozen steps must beat it clearly
    assert out["rmse"] < 0.8 and out["steps"] == 120 and out["diverged"] == 0
    for name in ("config.toml", "metrics.jsonl", "results.json", CHECKPOINT, BEST):
        assert (tmp_path / name).exists()


def test_bf16_autocast_trains_with_float32_states(tmp_path):
    cfg = preset("smoke", **{**TINY, "max_steps": 120, "filters": 16, "n_iter": 6},
                 autocast=True)
    out = train(cfg, tmp_path, progress=False, log=quiet)
    assert out["rmse"] < 0.8 and out["rollbacks"] == 0
    ck = load_checkpoint(tmp_path / CHECKPOINT, ("xa", "weights"))
    assert ck["xa"].dtype == torch.float32  # the cycled states never drop to bf16
    assert all(w.dtype == torch.float32 for w in ck["weights"].values() if w.is_floating_point())


def test_resume_is_exact_float64(tmp_path, faults):
    cfg = preset("smoke", **TINY, dtype="float64")
    full = train(cfg, tmp_path / "a", progress=False, log=quiet)
    faults.stop_at = 11  # mid-epoch
    with pytest.raises(Stop):
        train(cfg, tmp_path / "b", progress=False, log=quiet)
    faults.stop_at = None
    resumed = train(cfg, tmp_path / "b", resume=True, progress=False, log=quiet)
    wa = load_checkpoint(tmp_path / "a" / CHECKPOINT)["weights"]
    wb = load_checkpoint(tmp_path / "b" / CHECKPOINT)["weights"]
    assert all(torch.equal(wa[k], wb[k]) for k in wa)
    assert full["rmse"] == resumed["rmse"]


def test_resume_refuses_other_config(tmp_path, faults):
    cfg = preset("smoke", **TINY)
    faults.stop_at = 3
    with pytest.raises(Stop):
        train(cfg, tmp_path, progress=False, log=quiet)
    faults.stop_at = None
    with pytest.raises(DanlabError, match="differs"):
        train(cfg.replace(lr=1e-4), tmp_path, resume=True, progress=False, log=quiet)


def test_nan_loss_rolls_back(tmp_path, faults):
    cfg = preset("smoke", **TINY)
    logs = []
    faults.nan_at = 10
    out = train(cfg, tmp_path, progress=False, log=logs.append)
    assert out["rollbacks"] == 1 and out["steps"] == cfg.max_steps
    assert any("rolled back" in line for line in logs)
    assert all(torch.isfinite(p).all() for p in load(tmp_path).parameters())


def test_load_is_a_module_and_generalises_to_other_nx(tmp_path):
    train(preset("smoke", **TINY), tmp_path, progress=False, log=quiet)
    op = load(tmp_path, dtype=torch.float64)
    assert not op.training
    for nx in (40, 80):
        xf, zeta = torch.randn(3, nx, dtype=torch.float64), torch.randn(3, nx, dtype=torch.float64)
        assert op(xf, zeta).shape == (3, nx)
    r = evaluate_run(tmp_path, nx=80, obs="random", cycles=60, spinup=10, trajectories=2)
    assert r.test_set["spec"].startswith("l96 F=8 N_x=80")
    assert r.rmse < 1.5


def test_config_validation():
    with pytest.raises(DanlabError, match="s_b"):
        TrainConfig(n_r=100, s_b=95)
    with pytest.raises(DanlabError, match="unknown key"):
        TrainConfig.from_dict({"n_iterations": 3})
    with pytest.raises(DanlabError, match="wrong type"):
        TrainConfig.from_dict({"n_iter": "8"})
    with pytest.raises(DanlabError, match="kernel"):
        TrainConfig(kernel=4)
    with pytest.raises(DanlabError, match="autocast"):
        TrainConfig(autocast=True, dtype="float64")


def _full_and_resumed(cfg, tmp_path, faults, stop_at: int) -> tuple[dict, dict]:
    """One run left alone (tmp_path/a) and one stopped at `stop_at` then resumed (b); their
    last and best weights must be identical."""
    full = train(cfg, tmp_path / "a", progress=False, log=quiet)
    faults.stop_at = stop_at
    with pytest.raises(Stop):
        train(cfg, tmp_path / "b", progress=False, log=quiet)
    faults.stop_at = None
    resumed = train(cfg, tmp_path / "b", resume=True, progress=False, log=quiet)
    for name in (CHECKPOINT, BEST):
        wa = load_checkpoint(tmp_path / "a" / name)["weights"]
        wb = load_checkpoint(tmp_path / "b" / name)["weights"]
        assert all(torch.equal(wa[k], wb[k]) for k in wa), name
    return full, resumed


def test_resume_is_exact_with_ema_warmup_curriculum_and_product(tmp_path, faults):
    cfg = preset("smoke", **TINY, dtype="float64", ema=0.9, warmup=0.2, n_iter_start=2,
                 product=True)
    full, resumed = _full_and_resumed(cfg, tmp_path, faults, stop_at=13)
    assert full["rmse"] == resumed["rmse"]
    # best.pt holds the average of the weights, not the last iterate
    ck = load_checkpoint(tmp_path / "a" / CHECKPOINT, ("ema", "weights"))
    assert not all(torch.equal(ck["ema"][k], ck["weights"][k]) for k in ck["weights"])


def test_val_every_validates_every_kth_epoch_the_last_step_and_resumes_exactly(
        tmp_path, faults):
    from danlab.io import read_jsonl

    cfg = preset("smoke", **TINY, dtype="float64", val_every=2)  # 7 steps an epoch, 24 steps
    # stopped in epoch 3, after the unvalidated epoch 1 and the validated 2
    full, resumed = _full_and_resumed(cfg, tmp_path, faults, stop_at=16)
    rows = [r for r in read_jsonl(tmp_path / "a" / "metrics.jsonl") if "epoch" in r]
    assert [r["epoch"] for r in rows] == [1, 2, 3, 4]
    assert [r["epoch"] for r in rows if "val_rmse" in r] == [2, 4]  # step 14 and step 24
    assert (full["rmse"], full["val_rmse"]) == (resumed["rmse"], resumed["val_rmse"])


def test_a_run_stopped_after_an_unvalidated_epoch_validates_at_the_end(tmp_path, monkeypatch):
    from danlab import training

    reason = training.Session.stop_reason
    monkeypatch.setattr(training.Session, "stop_reason", lambda s, elapsed, pending: (
        "time_budget" if s.counters.step == 7 else reason(s, elapsed, pending)))
    cfg = preset("smoke", **TINY, val_every=3)
    out = train(cfg, tmp_path, progress=False, log=quiet)
    assert out["steps"] == 7 and out["stop"] == "time_budget"
    assert load_checkpoint(tmp_path / BEST, ("step",))["step"] == 7  # the end's weights


def test_schedules():
    from danlab.training import lr_factor, n_iter_at

    cfg = preset("smoke", warmup=0.1, n_iter_start=2, n_iter=8, lr=1e-3, lr_min=1e-5)
    assert lr_factor(cfg, 0.05) == pytest.approx(0.5)
    assert lr_factor(cfg, 0.1) == pytest.approx(1.0)
    assert lr_factor(cfg, 1.0) == pytest.approx(0.01)
    assert [n_iter_at(cfg, t) for t in (0.0, 0.25, 0.5, 1.0)] == [2, 5, 8, 8]
    late = cfg.replace(n_iter_from=0.6, n_iter_until=0.6)  # a switch at 60% of the run
    assert [n_iter_at(late, t) for t in (0.0, 0.59, 0.6, 1.0)] == [2, 2, 8, 8]
    ramp = cfg.replace(n_iter_from=0.5, n_iter_until=0.75)
    assert [n_iter_at(ramp, t) for t in (0.4, 0.5, 0.625, 0.75, 0.9)] == [2, 2, 5, 8, 8]
    with pytest.raises(DanlabError, match="n_iter_from=0.7, n_iter_until=0.5"):
        cfg.replace(n_iter_from=0.7)
    held = cfg.replace(warmup=0.0, decay=0.25)  # lr held for 75% of the run, then the cosine
    assert lr_factor(held, 0.5) == pytest.approx(1.0)
    assert lr_factor(held, 0.875) == pytest.approx(0.505)
    assert lr_factor(held, 1.0) == pytest.approx(0.01)
    assert lr_factor(cfg.replace(warmup=0.0), 0.5) == pytest.approx(0.505)
    drop = cfg.replace(warmup=0.0, decay=0.8, decay_from=0.25)  # 20% at lr, then a quarter
    assert lr_factor(drop, 0.19) == 1.0
    assert lr_factor(drop, 0.2) == pytest.approx(0.25)
    assert lr_factor(drop, 0.6) == pytest.approx(0.01 + 0.5 * (0.25 - 0.01))
    assert lr_factor(drop, 1.0) == pytest.approx(0.01)
    with pytest.raises(DanlabError, match="decay_from=0 is not allowed"):
        cfg.replace(decay_from=0)


def test_resume_reads_a_checkpoint_with_the_older_weight_names(tmp_path, faults):
    """Checkpoints written before the nets shared one trunk (keys lift.*, blocks.*, clim,
    alpha) resume without a traceback."""
    from danlab import io

    cfg = preset("smoke", **TINY)
    faults.stop_at = 5
    with pytest.raises(Stop):
        train(cfg, tmp_path, progress=False, log=quiet)
    faults.stop_at = None
    ck = load_checkpoint(tmp_path / CHECKPOINT, ("weights",))
    old = {k.replace("trunk.", "").replace("norm.clim", "clim").replace("alpha_term.alpha",
                                                                        "alpha"): v
           for k, v in ck["weights"].items()}
    io.save_torch(tmp_path / CHECKPOINT, {**ck, "weights": old})
    out = train(cfg, tmp_path, resume=True, progress=False, log=quiet)
    assert out["steps"] == cfg.max_steps


def test_init_starts_from_a_runs_best_weights_and_resume_does_not_read_it_again(
        tmp_path, faults):
    a = preset("smoke", **TINY)
    train(a, tmp_path / "a", progress=False, log=quiet)
    best = load_checkpoint(tmp_path / "a" / BEST)["weights"]
    b = a.replace(init=str(tmp_path / "a"), n_iter=2, lr=1e-3, seed=5)
    faults.stop_at = 0  # checkpoint the weights the run starts from
    with pytest.raises(Stop):
        train(b, tmp_path / "b", progress=False, log=quiet)
    faults.stop_at = None
    start = load_checkpoint(tmp_path / "b" / CHECKPOINT)["weights"]
    assert all(torch.equal(best[k], start[k]) for k in best)
    event = [json.loads(line) for line in (tmp_path / "b" / "metrics.jsonl").open()][0]
    digest = hashlib.sha256((tmp_path / "a" / BEST).read_bytes()).hexdigest()
    assert event["event"] == "init" and event["sha256"] == digest
    (tmp_path / "a").rename(tmp_path / "moved")  # the resumed run needs only its checkpoint
    out = train(b, tmp_path / "b", resume=True, progress=False, log=quiet)
    assert out["steps"] == b.max_steps and out["config"]["init"] == str(tmp_path / "a")
    with pytest.raises(DanlabError, match="filters 8 there, 16 here"):
        train(a.replace(init=str(tmp_path / "moved" / BEST), filters=16), tmp_path / "c",
              progress=False, log=quiet)
    assert not (tmp_path / "c").exists()


def test_forecast_loss_adds_the_next_forecasts_error_to_the_objective(tmp_path):
    """With forecast_loss w the step descends (mean analysis MSE of the window) + w x (MSE of
    the forecast from the window's last analyses against the next truth): the gradient of one
    step equals the gradient of that sum computed by hand, in float64 to 1e-10."""
    from danlab.cycle import cycle
    from danlab.filters.dan import DANFilter
    from danlab.training import Session

    w = 0.7
    cfg = preset("smoke", **TINY, dtype="float64", forecast_loss=w)
    s = Session(cfg, tmp_path, torch.device("cpu"), quiet)
    s.start(resume=False)
    weights = {k: v.clone() for k, v in s.net.state_dict().items()}
    idx = s.data.batch(0)
    xa0, truth0 = s.data.xa[idx].clone(), s.data.truth[idx].clone()
    gen_state = s.data.gen.get_state()
    s.step(0.0)
    got = [p.grad.clone() for p in s.net.parameters()]

    # the same window by hand: the observations drawn from the same stream
    s.data.gen.set_state(gen_state)
    obs, dt, model = cfg.twin.observation, cfg.twin.dt, s.model
    truths, draws, truth = [], [], truth0
    for _ in range(cfg.n_iter):
        truth = model.forecast(truth, dt)
        mask, noise = obs.draw(tuple(truth.shape), s.data.gen, truth.device, truth.dtype)
        truths.append(truth)
        draws.append((obs.apply(truth, mask, noise), mask))
    s.net.load_state_dict(weights)  # the step moved them
    s.net.zero_grad()
    steps = list(cycle(DANFilter(s.net), xa0, model, dt, draws, obs.sigma))
    analysis = sum(((xa - t) ** 2).mean() for (_, xa), t in zip(steps, truths)) / cfg.n_iter
    forecast = ((model.forecast(steps[-1][0], dt) - model.forecast(truths[-1], dt)) ** 2).mean()
    (analysis + w * forecast).backward()
    torch.nn.utils.clip_grad_norm_(s.net.parameters(), cfg.clip)
    want = [p.grad for p in s.net.parameters()]
    assert forecast > analysis  # the term is not negligible: errors grow over a cycle
    assert all(torch.allclose(g, h, rtol=1e-10, atol=1e-14) for g, h in zip(got, want))
