"""The committed SE-critic epoch sweep of Chapter 6 (chapters/06_aliasing.py, "How flat is a
fitted SE critic?"): :func:`tutorial_rl.aliasing.se_critic_sweep` over many epochs and seeds,
written to a results folder with its provenance, and read back by the chapter.

Run it (about 15 minutes on 2 busy cores)::

    python -m tutorial_rl.aliasing.epoch_sweep --out results/aliasing-epochs

``sweep.csv`` has one row per (epochs, seed): the fit's RMSE, the normal-slope ratio, whether the
SE-RL policy's final proposal ũ_T is safe (it escaped the flat-lined region) and the true value of
Φ(ũ_T). :func:`summarise` gives the per-epochs table the chapter prints and plots.
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import asdict
from pathlib import Path

import pandas as pd

from tutorial_rl.aliasing.experiment import ExperimentConfig
from tutorial_rl.aliasing.flat_lining import se_critic_sweep
from tutorial_rl.aliasing.scenarios import quadrotor_scenario
from tutorial_rl.provenance import provenance, write_provenance

__all__ = ["DEFAULT_EPOCHS", "DEFAULT_SEEDS", "load_sweep", "main", "run_sweep", "summarise"]

DEFAULT_EPOCHS = (100, 200, 400, 700, 1000, 2000)
DEFAULT_SEEDS = tuple(range(6))
#: The chapter's fit sizes (the ``ci`` profile's 1024 samples), with a small grid: the sweep only
#: needs the trajectories and the critics, not the figure surfaces.
SWEEP_CONFIG = ExperimentConfig(n_samples=1024, grid_size=5)


def run_sweep(out: Path, epochs: tuple[int, ...] = DEFAULT_EPOCHS,
              seeds: tuple[int, ...] = DEFAULT_SEEDS,
              config: ExperimentConfig = SWEEP_CONFIG) -> pd.DataFrame:
    """Run the sweep on the quadrotor scenario and write ``out/sweep.csv`` and provenance."""
    start = time.perf_counter()
    command = ["python", "-m", "tutorial_rl.aliasing.epoch_sweep", *sys.argv[1:]]
    record = provenance(command, 0.0, config={k: v for k, v in asdict(config).items()
                                               if k not in ("epochs", "seed")},
                        epochs=list(epochs), seeds=list(seeds), scenario="quadrotor")
    runs = se_critic_sweep(quadrotor_scenario(), epochs=epochs, seeds=seeds, config=config)
    frame = pd.DataFrame([{"epochs": r.epochs, "seed": r.seed, "rmse": r.rmse, "ratio": r.ratio,
                           "escaped": r.inside, "value": r.value} for r in runs])
    out.mkdir(parents=True, exist_ok=True)
    frame.to_csv(out / "sweep.csv", index=False)
    write_provenance(out, record, time.perf_counter() - start)
    return frame


def load_sweep(folder: Path) -> pd.DataFrame:
    """``folder/sweep.csv`` as written by :func:`run_sweep`."""
    path = Path(folder) / "sweep.csv"
    if not path.exists():
        raise FileNotFoundError(f"{path} does not exist; create it with "
                                "python -m tutorial_rl.aliasing.epoch_sweep --out " + str(folder))
    return pd.read_csv(path, float_precision="round_trip")


def summarise(frame: pd.DataFrame) -> pd.DataFrame:
    """Per number of epochs: seeds, median RMSE and ratio, escaped fits, mean and min value."""
    g = frame.groupby("epochs")
    return pd.DataFrame({"seeds": g.size(), "median RMSE": g["rmse"].median(),
                         "median ratio": g["ratio"].median(), "escaped": g["escaped"].sum(),
                         "mean value": g["value"].mean(), "min value": g["value"].min()})


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--epochs", type=int, nargs="+", default=list(DEFAULT_EPOCHS))
    parser.add_argument("--seeds", type=int, default=len(DEFAULT_SEEDS))
    args = parser.parse_args(argv)
    frame = run_sweep(args.out, tuple(args.epochs), tuple(range(args.seeds)))
    print(summarise(frame).to_string())
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
