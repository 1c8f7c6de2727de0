"""``--device cuda`` on a real GPU: does the grouped trainer run there, and is it faster?

Issue 11 (item 5) asks that the same code run unchanged on a GPU. The course's machines have no
GPU, so ``tests/test_device.py`` checks on the CPU that the code *would* run there (every tensor
created on its device, every ``.numpy()`` through ``.cpu()``). This script is the check on a
machine that has one; it is not part of the test suite (CI has no GPU)::

    python benchmarks/cuda_check.py --out cuda_check.json            # needs CUDA
    python benchmarks/cuda_check.py --device cpu --quick             # the script's own smoke test

It prints, and writes as JSON:

1. **Every variant trains on the device.** Each task × algorithm × variant trains a group of two
   runs (small networks, a few hundred steps) on the device: it finishes, SE-RL and SP-RL make
   zero constraint violations, the networks live on the device and ``model.pt`` holds CPU
   tensors. The same group on the CPU makes the same transitions until the first update (the
   actions before it come from each run's CPU generator and the environments are numpy), after
   which float rounding differs between the devices; the rows identical to the CPU's are counted.
2. **Determinism and exact checkpoints on the device.** The same group trained twice gives the
   same ``progress.csv`` and parameters; a group stopped right after a checkpoint and continued
   equals the uninterrupted one; Lemma 1 (A2C SE-RL ≡ SP-RL, grouped) holds on the device.
3. **Speed.** ms per run-step of grouped training at K = 1, 7, 28 (the sweep's group sizes) on
   the device and on one CPU core, for the paper's TD3 and A2C networks (steady state after a
   warm-up, as ``grid_throughput.py`` measures them).
"""

from __future__ import annotations

import argparse
import csv
import json
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from tutorial_rl.experiments import checkpoint as checkpoint_module
from tutorial_rl.experiments.config import VARIANTS
from tutorial_rl.experiments.grouped import train_group
from tutorial_rl.experiments.training import RunConfig, load_agent

sys.path.insert(0, str(Path(__file__).parent))
from grid_throughput import group_cell  # noqa: E402  (the benchmark's own timing of a group)

ENVS = ("pendulum", "quadrotor", "seeker")
GRID_VARIANTS = [v for v in VARIANTS if v != "unsafe"]
#: The speed section's cells (algo/env/variant): the seeker's TD3 is the grid's most expensive.
SPEED_CELLS = ("td3/seeker/sp-per-sample-loss", "td3/seeker/se-vanilla",
               "td3/quadrotor/sp-penalty-critic", "td3/pendulum/sp-vanilla",
               "a2c/quadrotor/sp-per-sample-loss")
SMALL = {"td3": {"hidden_sizes": [32, 32], "learning_starts": 100, "batch_size": 32},
         "a2c": {"hidden_sizes": [32, 32]}}


class _Stop(Exception):
    """Raised right after a checkpoint is written: the group stops there."""


def _configs(env: str, algo: str, variant: str, device: str, steps: int, root: Path,
             k: int = 2, **extra: Any) -> list[RunConfig]:
    mode, mitigation = VARIANTS[variant]
    return [RunConfig(env=env, algo=algo, mode=mode, mitigation=mitigation, steps=steps, seed=s,
                      alpha=None if mitigation == "none" else 0.5 * (s + 1),
                      agent={**SMALL[algo], **extra}, progress_bar=False, num_threads=1,
                      device=device, out=root / f"run{s}") for s in range(k)]


def _rows(run_dir: Path) -> list[dict[str, str]]:
    with open(run_dir / "progress.csv", newline="") as fh:
        return [{k: v for k, v in r.items() if k != "wall_time"} for r in csv.DictReader(fh)]


def _drift(a: Path, b: Path) -> float:
    """Largest parameter difference between two runs' ``model.pt``, relative to the largest
    parameter: the rounding drift between two devices after the same training."""
    ma, mb = (torch.load(d / "model.pt", weights_only=True) for d in (a, b))
    diff = max((ma[n][p] - mb[n][p]).abs().max().item() for n in ma for p in ma[n])
    scale = max(mb[n][p].abs().max().item() for n in mb for p in mb[n])
    return diff / scale


def _same_models(a: Path, b: Path) -> bool:
    ma, mb = (torch.load(d / "model.pt", weights_only=True) for d in (a, b))
    return ma.keys() == mb.keys() and all(
        torch.equal(ma[n][p], mb[n][p]) for n in ma for p in ma[n])


def every_variant(device: str, steps: int, root: Path) -> list[dict[str, Any]]:
    """Section 1: each task × algorithm × variant trains as a group of 2 on ``device``."""
    out = []
    print(f"\n1. every variant trains as a group of 2 on {device} ({steps} steps)")
    print(f"{'cell':16s} {'variant':20s} {'s':>6s} {'viol.':>6s} {'net device':>11s} "
          f"{'rows = cpu':>11s} {'|Δθ|/|θ| vs cpu':>16s}")
    for env in ENVS:
        for algo in ("td3", "a2c"):
            for variant in GRID_VARIANTS:
                where = root / f"{algo}-{variant}-{env}"
                start = time.perf_counter()
                results = train_group(_configs(env, algo, variant, device, steps, where / "dev"))
                seconds = time.perf_counter() - start
                train_group(_configs(env, algo, variant, "cpu", steps, where / "cpu"))
                violations = sum(int(r["constraint_violations"]) for res in results
                                 for r in res.progress)
                net_device = {str(p.device) for net in results[0].agent.networks().values()
                              for p in net.parameters()}
                saved = torch.load(where / "dev" / "run0" / "model.pt", weights_only=True)
                saved_device = {str(t.device) for net in saved.values() for t in net.values()}
                load_agent(where / "dev" / "run0", device="cpu")  # loads without a GPU device
                dev_rows, cpu_rows = _rows(where / "dev" / "run0"), _rows(where / "cpu" / "run0")
                same = next((i for i, (a, b) in enumerate(zip(dev_rows, cpu_rows, strict=True))
                             if a != b), len(dev_rows))
                row = {"env": env, "algo": algo, "variant": variant, "seconds": seconds,
                       "violations": violations, "network_device": sorted(net_device),
                       "model_pt_device": sorted(saved_device), "rows": len(dev_rows),
                       "rows_equal_to_cpu": same,
                       "parameter_drift_vs_cpu": _drift(where / "dev" / "run0",
                                                        where / "cpu" / "run0")}
                out.append(row)
                print(f"{algo + '/' + env:16s} {variant:20s} {seconds:6.1f} {violations:6d} "
                      f"{','.join(sorted(net_device)):>11s} {same:>5d}/{len(dev_rows):<5d} "
                      f"{row['parameter_drift_vs_cpu']:16.1e}",
                      flush=True)
    return out


def determinism(device: str, steps: int, root: Path) -> dict[str, Any]:
    """Section 2: repeatability, checkpoint continuation and Lemma 1 on ``device``."""
    print(f"\n2. determinism on {device}")
    out: dict[str, Any] = {}
    for env, algo, variant in (("seeker", "td3", "sp-per-sample-loss"),
                               ("quadrotor", "td3", "sp-penalty-critic"),
                               ("pendulum", "a2c", "sp-per-sample-loss")):
        name = f"{algo}-{variant}-{env}"
        a, b, cut = (root / name / x for x in ("a", "b", "cut"))
        train_group(_configs(env, algo, variant, device, steps, a))
        train_group(_configs(env, algo, variant, device, steps, b))
        repeat = all(_rows(a / f"run{s}") == _rows(b / f"run{s}")
                     and _same_models(a / f"run{s}", b / f"run{s}") for s in range(2))
        save = checkpoint_module.Checkpoint.save

        def save_then_stop(self: checkpoint_module.Checkpoint, save: Any = save) -> None:
            save(self)
            if self._objects[0].steps >= steps // 2:
                raise _Stop

        ckpt = root / name / "group.pt"
        checkpoint_module.Checkpoint.save = save_then_stop  # type: ignore[method-assign]
        try:
            train_group(_configs(env, algo, variant, device, steps, cut), ckpt, steps // 4)
            raise RuntimeError("the group was never stopped")
        except _Stop:
            pass
        finally:
            checkpoint_module.Checkpoint.save = save  # type: ignore[method-assign]
        train_group(_configs(env, algo, variant, device, steps, cut), ckpt, steps // 4)
        resumed = all(_rows(a / f"run{s}") == _rows(cut / f"run{s}")
                      and _same_models(a / f"run{s}", cut / f"run{s}") for s in range(2))
        out[name] = {"repeatable": repeat, "checkpoint_continues_exactly": resumed}
        print(f"{name:36s} same twice: {repeat}   stopped + continued = whole: {resumed}",
              flush=True)
    for env in ENVS:
        runs = {}
        for variant in ("se-vanilla", "sp-vanilla"):
            train_group(_configs(env, "a2c", variant, device, steps, root / f"lemma1-{env}"
                                 / variant))
            runs[variant] = root / f"lemma1-{env}" / variant
        equal = all(_rows(runs["se-vanilla"] / f"run{s}") == _rows(runs["sp-vanilla"] / f"run{s}")
                    for s in range(2))
        out[f"lemma1-{env}"] = equal
        print(f"Lemma 1, A2C {env:10s} SE-RL progress == SP-RL progress: {equal}", flush=True)
    return out


def speed(device: str, cells: list[tuple[str, str, str]], sizes: list[int], steps: int,
          warmup: int) -> dict[str, Any]:
    """Section 3: ms per run-step of grouped training on ``device`` and on one CPU core."""
    print(f"\n3. ms per run-step, {steps} timed steps after {warmup} (paper networks); "
          f"{device} vs one CPU core")
    torch.set_num_threads(1)
    out: dict[str, Any] = {}
    print(f"{'cell':16s} {'variant':20s} " + " ".join(f"{'K=' + str(k):>22s}" for k in sizes))
    for env, algo, variant in cells:
        texts = []
        for k in sizes:
            # K = 1 on the CPU is a run alone (train's path), on the device a group of one
            ms = {where: group_cell(env, algo, variant, k, steps, warmup, where)
                  for where in ("cpu", device)}
            out[f"{algo}/{env}/{variant}/K={k}"] = ms
            texts.append(f"{ms['cpu']:6.2f}/{ms[device]:6.2f} {ms['cpu'] / ms[device]:5.1f}x")
        print(f"{algo + '/' + env:16s} {variant:20s} " + " ".join(f"{t:>22s}" for t in texts),
              flush=True)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--out", default=None, help="write the results as JSON here")
    parser.add_argument("--quick", action="store_true", help="few steps: the script's smoke test")
    parser.add_argument("--sections", default="1,2,3")
    parser.add_argument("--cells", default=",".join(SPEED_CELLS),
                        help="speed cells, algo/env/variant, comma-separated")
    args = parser.parse_args()
    quick = args.quick
    report: dict[str, Any] = {
        "device": args.device, "torch": torch.__version__, "python": platform.python_version(),
        "gpu": torch.cuda.get_device_name() if args.device.startswith("cuda") else None}
    print(json.dumps(report))
    sections = args.sections.split(",")
    cells = [(c.split("/")[1], c.split("/")[0], c.split("/")[2]) for c in args.cells.split(",")]
    runs = {"1": lambda root: ("every_variant",
                               every_variant(args.device, 160 if quick else 300, root)),
            "2": lambda root: ("determinism",
                               determinism(args.device, 160 if quick else 400, root)),
            "3": lambda root: ("speed", speed(args.device, cells, [1, 7] if quick else [1, 7, 28],
                                              30 if quick else 100, 120 if quick else 200))}
    with tempfile.TemporaryDirectory() as tmp:
        for section in sections:
            name, result = runs[section](Path(tmp))
            report[name] = result
            if args.out:  # after every section: a run cut short keeps what it measured
                Path(args.out).write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
