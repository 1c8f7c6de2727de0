"""``--device`` (issue 11, item 5): validation, the CPU default, and device-correct code paths.

The course's machines have no GPU, so CUDA cannot run here. What can be checked on a CPU is that
the code would run unchanged on one:

- every tensor -> numpy conversion goes through ``.cpu()`` (``Tensor.numpy`` fails on a CUDA
  tensor): statically, over the modules a training run uses, and at run time, during short
  grouped and single TD3 and A2C trainings in every mode that projects;
- every tensor those modules create says where (``device=``): a factory call without it would
  put the tensor on the CPU beside CUDA tensors. Checked at run time with a
  :class:`~torch.overrides.TorchFunctionMode` that sees every torch call;
- ``device="cpu"`` given explicitly is bit for bit the default.
"""

from __future__ import annotations

import ast
import json
import sys
from pathlib import Path
from typing import Any

import pytest
import torch
from torch.overrides import TorchFunctionMode
from torch.utils._device import _device_constructors

import tutorial_rl
from tutorial_rl.agents.common import ConfigError, resolve_device
from tutorial_rl.experiments.cli import main
from tutorial_rl.experiments.grouped import train_group
from tutorial_rl.experiments.training import RunConfig, load_agent, train

PACKAGE = Path(tutorial_rl.__file__).parent
TORCH = str(Path(torch.__file__).parent)
#: The modules a training run executes on the agents' device.
HOT = ("agents", "experiments", "projection", "safeguards.py", "envs")
#: Built on the CPU on purpose: the networks initialise there, then move (same weights on every
#: device).
CPU_BY_DESIGN = ("agents/networks.py",)
TINY_TD3 = {"hidden_sizes": [8, 8], "learning_starts": 40, "batch_size": 16}


def hot_files() -> list[Path]:
    files: list[Path] = []
    for name in HOT:
        path = PACKAGE / name
        files += sorted(path.rglob("*.py")) if path.is_dir() else [path]
    return files


# ---------------------------------------------------------------------------------- validation
@pytest.mark.parametrize("device", ["cpu", "cpu:0", torch.device("cpu")])
def test_cpu_spellings_resolve_to_the_cpu(device: Any) -> None:
    assert resolve_device(device) == torch.device("cpu")


@pytest.mark.parametrize(("device", "words"), [
    ("tpu", "is not a device"), ("cuda:x", "is not a device"), ("mps", "not supported"),
    ("meta", "not supported"), (3, "must be 'cpu', 'cuda' or 'cuda:N'")])
def test_other_devices_are_rejected_by_name(device: Any, words: str) -> None:
    with pytest.raises(ConfigError, match=words):
        resolve_device(device)


def test_cuda_without_cuda_is_a_clear_error_naming_the_flag(monkeypatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ConfigError, match=r"--device 'cuda' was requested but CUDA is not "
                                          r"available.*torch.cuda.is_available\(\) is False"):
        resolve_device("cuda")


def test_cuda_indices_are_checked_where_cuda_exists(monkeypatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    assert resolve_device("cuda") == torch.device("cuda")
    assert resolve_device("cuda:0") == torch.device("cuda:0")
    with pytest.raises(ConfigError, match=r"1 CUDA device\(s\)"):
        resolve_device("cuda:1")


def test_train_and_sweep_reject_cuda_on_this_machine_before_writing(tmp_path, monkeypatch,
                                                                     capsys) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    train_args = ["train", "--env", "pendulum", "--algo", "td3", "--steps", "10",
                  "--out", str(tmp_path / "run"), "--device", "cuda"]
    assert main(train_args) == 2
    assert "--device 'cuda' was requested but CUDA is not available" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()
    for extra in ([], ["--dry-run"]):
        assert main(["sweep", "--profile", "ci", "--out", str(tmp_path / "sweep"),
                     "--device", "cuda:0", *extra]) == 2
        assert "--device 'cuda:0' was requested" in capsys.readouterr().err
    assert not (tmp_path / "sweep").exists()
    assert main([*train_args[:-1], "gpu"]) == 2
    assert "--device 'gpu' is not a device" in capsys.readouterr().err


# ---------------------------------------------------------------------------------- .numpy()
def _numpy_calls_without_cpu(path: Path) -> list[str]:
    """``x.numpy()`` where x is not ``<...>.cpu()``: fails on a CUDA tensor."""
    bad = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) \
                and node.func.attr == "numpy" and not node.args:
            receiver = node.func.value
            if not (isinstance(receiver, ast.Call) and isinstance(receiver.func, ast.Attribute)
                    and receiver.func.attr == "cpu"):
                name = path.relative_to(PACKAGE) if path.is_relative_to(PACKAGE) else path.name
                bad.append(f"{name}:{node.lineno}")
    return bad


def test_the_training_code_converts_tensors_to_numpy_only_through_cpu() -> None:
    bad = [where for path in hot_files() for where in _numpy_calls_without_cpu(path)]
    assert not bad, f".numpy() without .cpu() (fails on CUDA tensors): {bad}"


def test_the_static_check_catches_a_regression(tmp_path) -> None:
    sample = tmp_path / "sample.py"
    sample.write_text("a = x.numpy()\nb = x.cpu().numpy()\nc = x.detach().cpu().numpy()\n"
                      "d = np.asarray(x).astype(float)\ne = f(x)[0].numpy().astype(float)\n")
    found = [w.rsplit(":", 1)[1] for w in _numpy_calls_without_cpu(sample)]
    assert found == ["1", "5"]


def test_learner_modules_move_what_they_take_from_numpy() -> None:
    """``torch.from_numpy(a)`` in the learners is followed by ``.to(device)`` (the numpy
    environments, their safeguard and the projection's CPU fallbacks work on the CPU by design)."""
    learners = [p for p in (PACKAGE / "agents").glob("*.py")
                if p.name not in ("group_env.py", "plots.py")]
    bad = []
    for path in learners:
        tree = ast.parse(path.read_text())
        moved = {id(n.func.value) for n in ast.walk(tree)
                 if isinstance(n, ast.Call) and isinstance(n.func, ast.Attribute)
                 and n.func.attr == "to"}
        # [None] and [:, k] views of a tensor are moved like the tensor
        for n in ast.walk(tree):
            if isinstance(n, ast.Subscript) and id(n) in moved:
                moved.add(id(n.value))
        for n in ast.walk(tree):
            if isinstance(n, ast.Call) and isinstance(n.func, ast.Attribute) \
                    and n.func.attr == "from_numpy" and id(n) not in moved:
                bad.append(f"{path.name}:{n.lineno}")
    assert not bad, f"torch.from_numpy(...) not moved to the device: {bad}"


# ---------------------------------------------------------------------------------- run time
class DeviceAudit(TorchFunctionMode):
    """Records, from the package's hot modules, factory calls without ``device=`` and
    ``Tensor.numpy`` calls on tensors that did not come out of ``.cpu()``."""

    def __init__(self) -> None:
        super().__init__()
        self.factories: set[str] = set()
        self.numpy: set[str] = set()
        self._from_cpu: list[torch.Tensor] = []  # kept alive: ids stay unique
        self._ids: set[int] = set()
        self._constructors = _device_constructors()

    @staticmethod
    def _caller() -> str | None:
        frame = sys._getframe(2)
        while frame is not None and frame.f_code.co_filename.startswith(TORCH):
            frame = frame.f_back
        if frame is None:
            return None
        path = Path(frame.f_code.co_filename)
        if not path.is_relative_to(PACKAGE):
            return None
        relative = path.relative_to(PACKAGE).as_posix()
        if relative in CPU_BY_DESIGN or not relative.startswith(HOT):
            return None
        return f"{relative}:{frame.f_lineno}"

    def __torch_function__(self, func, types, args=(), kwargs=None):  # type: ignore[override]
        kwargs = kwargs or {}
        name = getattr(func, "__name__", "")
        if func in self._constructors and kwargs.get("device") is None:
            where = self._caller()
            if where is not None:
                self.factories.add(f"{where} torch.{name}")
        elif name == "numpy" and args and id(args[0]) not in self._ids:
            where = self._caller()
            if where is not None:
                self.numpy.add(where)
        out = func(*args, **kwargs)
        if name == "cpu" and isinstance(out, torch.Tensor):
            self._from_cpu.append(out)
            self._ids.add(id(out))
        return out


def _configs(algo: str, mode: str, mitigation: str, env: str, k: int,
             **agent: Any) -> list[RunConfig]:
    return [RunConfig(env=env, algo=algo, mode=mode, mitigation=mitigation,
                      alpha=None if mitigation == "none" else 0.5 * (s + 1), seed=s, steps=80,
                      agent={**(TINY_TD3 if algo == "td3" else {"hidden_sizes": [8, 8],
                                                                "n_steps": 8}), **agent},
                      progress_bar=False, device="cpu") for s in range(k)]


@pytest.mark.parametrize(("algo", "mode", "mitigation", "env", "k", "agent"), [
    ("td3", "sp", "per-sample-loss", "seeker", 2, {}),
    ("td3", "sp", "penalty-critic", "quadrotor", 1, {}),
    ("td3", "se", "penalty", "pendulum", 2, {}),
    ("a2c", "sp", "per-sample-loss", "seeker", 2, {}),
    ("a2c", "sp", "none", "quadrotor", 1, {"sp_log_likelihood": "projected-mean"}),
    ("a2c", "se", "penalty", "pendulum", 1, {}),
])
def test_training_creates_every_tensor_on_its_device_and_reads_back_through_cpu(
        tmp_path, algo: str, mode: str, mitigation: str, env: str, k: int,
        agent: dict[str, Any]) -> None:
    configs = _configs(algo, mode, mitigation, env, k, **agent)
    for i, config in enumerate(configs):
        config.out = tmp_path / f"run{i}"
    audit = DeviceAudit()
    with audit:
        results = train_group(configs) if k > 1 else [train(configs[0])]
        load_agent(tmp_path / "run0")[1].select_action(results[0].agent.obs)
    found = {"tensors created without device=": sorted(audit.factories),
             ".numpy() of a tensor that did not come from .cpu()": sorted(audit.numpy)}
    assert found == {key: [] for key in found}
    assert all(r.progress for r in results)


def test_the_audit_catches_a_regression() -> None:
    audit = DeviceAudit()
    src = PACKAGE / "agents" / "td3.py"  # pretend the code below is in a hot module
    code = compile("t = torch.zeros(3)\nu = torch.ones(2, device='cpu')\nn = t.numpy()\n"
                   "m = u.cpu().numpy()\n", str(src), "exec")
    with audit:
        exec(code, {"torch": torch})  # noqa: S102
    assert audit.factories == {"agents/td3.py:1 torch.zeros"}
    assert audit.numpy == {"agents/td3.py:3"}


# ---------------------------------------------------------------------------------- cpu default
def test_device_cpu_given_explicitly_is_the_default_bit_for_bit(tmp_path) -> None:
    runs = {}
    for name, extra in (("default", {}), ("explicit", {"device": "cpu"})):
        config = RunConfig(env="seeker", algo="td3", mode="sp", mitigation="per-sample-loss",
                           alpha=0.5, steps=120, seed=3, agent=TINY_TD3, progress_bar=False,
                           out=tmp_path / name, **extra)
        runs[name] = train(config)
    a, b = (runs[n].agent.state_dict() for n in ("default", "explicit"))
    assert all(torch.equal(a[n][key], b[n][key]) for n in a for key in a[n])
    drop = ("wall_time",)
    assert [{k: v for k, v in r.items() if k not in drop} for r in runs["default"].progress] == \
        [{k: v for k, v in r.items() if k not in drop} for r in runs["explicit"].progress]
    recorded = json.loads((tmp_path / "default" / "config.json").read_text())
    assert recorded["device"] == "cpu"
    # model.pt holds CPU tensors and loads onto a requested device
    state = torch.load(tmp_path / "default" / "model.pt", weights_only=True)
    assert {t.device.type for net in state.values() for t in net.values()} == {"cpu"}
    _, loaded = load_agent(tmp_path / "default", device="cpu")
    assert loaded.device == torch.device("cpu")


def test_a_sweep_records_its_device_but_keeps_its_run_keys(tmp_path) -> None:
    from tutorial_rl.experiments.config import PROFILES, select_runs
    from tutorial_rl.experiments.runner import sweep

    only = ["alpha=none", "seed=1"]
    summary = sweep("ci", tmp_path, only=only, overrides={"steps": {"td3/pendulum": 60}},
                    progress=False, checkpoint_every=0, device="cpu")
    assert summary.exit_code == 0
    keys = [s.key for s in select_runs(PROFILES["ci"], only)]
    assert keys == ["td3-se-vanilla-pendulum-s1"]  # the committed results' key format
    assert sorted(p.name for p in (tmp_path / "runs").iterdir()) == keys
    assert json.loads((tmp_path / "sweep.json").read_text())["device"] == "cpu"
    assert json.loads((tmp_path / "provenance.json").read_text())["device"] == "cpu"
    assert json.loads((tmp_path / "runs" / keys[0] / "config.json").read_text())["device"] \
        == "cpu"


# ---------------------------------------------------------------------------------- checkpoints
class _Agent:
    """What a checkpoint saves of an agent: tensors, a CPU generator and the step counter."""

    def __init__(self) -> None:
        self.steps, self.weight = 7, torch.arange(3.0)
        self.generator = torch.Generator().manual_seed(5)


class _Recorder:
    def state_dict(self) -> dict[str, Any]:
        return {"rows": []}


def test_a_checkpoint_written_on_a_gpu_loads_here_and_is_not_continued(tmp_path, monkeypatch,
                                                                       capsys) -> None:
    """Every storage is tagged ``cuda:0`` as a GPU run's would be: the file still loads here
    (``readable_here``), and its identity (device ``cuda``) keeps a CPU run from continuing it."""
    import torch.serialization

    from tutorial_rl.experiments.checkpoint import (
        Checkpoint,
        _global_rng_state,
        _set_global_rng_state,
        readable_here,
    )

    def write(path: Path, fn: Any) -> None:
        with open(path, "wb") as fh:
            fn(fh)

    path = tmp_path / "checkpoint.pt"
    gpu = Checkpoint(path, 1, {"device": "cuda"}, write)
    gpu.attach(_Agent(), None, _Recorder())
    with monkeypatch.context() as m:
        m.setattr(torch.serialization, "location_tag", lambda storage: "cuda:0")
        gpu.save()
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(RuntimeError, match="CUDA"):  # what a plain torch.load does here
        torch.load(path, weights_only=False)
    state = torch.load(path, weights_only=False, map_location=readable_here)
    assert torch.equal(state["agent"].weight, torch.arange(3.0))
    assert torch.randn(1, generator=state["agent"].generator).item() == \
        torch.randn(1, generator=torch.Generator().manual_seed(5)).item()
    rng = _global_rng_state()
    assert Checkpoint(path, 1, {"device": "cpu"}, write).load() is None
    assert "belongs to another run" in capsys.readouterr().err
    restored = Checkpoint(path, 1, {"device": "cuda"}, write).load()
    _set_global_rng_state(rng)  # load() restored the process-wide generators of the save
    assert restored is not None and restored[0].steps == 7
