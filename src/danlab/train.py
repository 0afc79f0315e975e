"""Training a DAN through the DA cycle with truncated backpropagation (paper Sect. 2.2, App. A).

N_r trajectories (10% kept for validation) keep cycling for the whole training: each step takes
S_b of them, runs N_iter cycles of the one cycle engine with gradients on from where they last
stood (truth advanced by the model, fresh observations each cycle), backpropagates the loss of
Eq. 4 over those cycles, and stores the detached states back. The loop below is the whole
story; its units (data, step, validation, checkpoint, signals) are in danlab.training.
"""

from __future__ import annotations

from pathlib import Path

import torch

from danlab import io
from danlab.config import TrainConfig
from danlab.progress import log as stderr_log
from danlab.progress import progress_bar
from danlab.runs import BEST, CHECKPOINT, evaluate_run, load, load_checkpoint
from danlab.training import (
    MAX_ROLLBACKS,
    Clock,
    Group,
    Session,
    Snapshots,
    Stop,
    StopSignals,
)

SIGNALS = ("SIGINT", "SIGTERM")


def train(cfg: TrainConfig, out_dir: str | Path, resume: bool = False, device: str = "cpu",
          progress: bool = True, log=stderr_log, snapshots: tuple[float, ...] = (),
          snapshot_steps: tuple[int, ...] = ()) -> dict:
    """Train, checkpointing every epoch into out_dir; returns the summary also written to
    out_dir/results.json. `snapshots` (seconds of training) and `snapshot_steps` keep the
    weights at those times / steps under out_dir/snapshots/, for learning curves."""
    dev = torch.device(device)
    s = Session(cfg, Path(out_dir), dev, log, Group.from_env(dev)).start(resume)
    clock = Clock(s.counters.seconds)
    snaps = Snapshots(s.out, snapshots, snapshot_steps, s.counters.seconds, log)
    bar = progress_bar(total=s.n_total, initial=s.counters.step, desc="train", unit="step",
                       enabled=progress and s.writes)
    train_rmse = float("nan")
    with StopSignals() as pending:
        try:
            while (reason := s.stop_reason(clock.elapsed(), pending)) is None:
                train_rmse = s.step(clock.elapsed())
                snaps.after_step(s, clock)
                bar.update(1)
                bar.set_postfix(train=f"{train_rmse:.3f}", val=f"{s.counters.best_val:.3f}")
                if s.counters.step % 50 == 0:
                    s.metric(dict(step=s.counters.step, train_rmse=train_rmse,
                                  seconds=clock.elapsed()))
                if s.end_of_epoch():
                    s.end_epoch(clock.elapsed(), train_rmse)
                    if s.patience_exhausted():
                        reason = "early_stop"
                        break
            if reason in SIGNALS:
                raise Stop(reason)
        except Stop as sig:
            s.checkpoint(clock.elapsed())
            log(f"{sig}: checkpoint saved at step {s.counters.step}; continue with --resume")
            s.group.close()  # every rank stops at the same step
            raise
        except BaseException:
            s.group.close(wait=False)  # this rank's own error: the others may never come
            raise
        finally:
            bar.close()
    s.finish(clock.elapsed())
    summary = summarise(s, reason, device, progress) if s.writes else {}
    s.group.close()
    return summary


def summarise(s: Session, reason: str, device: str, progress: bool) -> dict:
    """Test RMSE of the best weights on the twin spec's test set; results.json."""
    c = s.counters
    test = evaluate_run(s.out, device=device, progress=progress)
    summary = dict(rmse=test.rmse, rmse_label=test.label(),
                   rmse_per_trajectory=test.summary()["rmse_per_trajectory"],
                   diverged=test.n_diverged, test_set=test.test_set, val_rmse=c.best_val,
                   steps=c.step, epochs=c.epoch, seconds=c.seconds, stop=reason,
                   throughput=c.step * s.cfg.s_b * s.cfg.n_iter / max(c.seconds, 1e-9),
                   rollbacks=c.rollbacks, skipped=c.skipped, workers=s.group.world,
                   config=s.cfg.to_dict())
    if s.writes:
        io.write_json(s.out / "results.json", summary)
    return summary


def rollback_note(n: int, skipped: int = 0) -> str:
    """What a summary line says of a run's non-finite losses: each rollback halved the learning
    rate for the rest of the run (which changes the recipe a result was trained with); a skipped
    step only left out one batch whose lost trajectories blew up."""
    note = ""
    if n:
        note += (f", {n} non-finite loss{'es' if n > 1 else ''} rolled back (learning rate "
                 f"x{0.5 ** n:g} from then on)")
    if skipped:
        note += (f", {skipped} step{'s' if skipped > 1 else ''} skipped (non-finite loss from "
                 "blown-up trajectories)")
    return note


__all__ = ["BEST", "CHECKPOINT", "MAX_ROLLBACKS", "Stop", "evaluate_run", "load",
           "load_checkpoint", "rollback_note", "train"]
