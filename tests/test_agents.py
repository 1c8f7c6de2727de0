"""Tests of the agents: TD3 and A2C in the modes unsafe, SE-RL, SP-RL with every mitigation.

Chapter 4 (chapters/04_se_rl.py) and Chapter 5 (chapters/05_sp_rl.py); DESIGN.md §3. Training runs
use tiny budgets and the real code paths (cleanrl-style smoke tests); one learning test trains
TD3 for the pendulum's full budget.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
import torch

from tutorial_rl.agents import (
    A2C,
    TD3,
    VALID_MITIGATIONS,
    A2CConfig,
    ConfigError,
    SafetyConfig,
    TD3Config,
)
from tutorial_rl.agents.buffers import (
    Batch,
    ReplayBuffer,
    SafeSetStore,
    compute_gae,
    pad_safe_sets,
)
from tutorial_rl.agents.safe_layer import (
    _first_occurrences,
    drop_redundant_rows,
    drop_redundant_rows_many,
    project,
    project_many,
    same_rows,
)
from tutorial_rl.envs.vector import TaskVectorEnv
from tutorial_rl.experiments.training import RunConfig, RunResult, evaluate, train
from tutorial_rl.projection import InfeasibleSetError, project_polytope

PAIRS = [(mode, mit) for mode, mits in VALID_MITIGATIONS.items() for mit in mits]
#: Tiny budgets: a few hundred steps, updates from step 100, small minibatches.
TINY = {"td3": {"learning_starts": 100, "batch_size": 32}, "a2c": {"n_steps": 8}}


def tiny_run(env: str, algo: str, mode: str, mitigation: str = "none", seed: int = 0,
             steps: int = 300, **agent: object) -> RunResult:
    alpha = None if mitigation == "none" else 0.5
    return train(RunConfig(env=env, algo=algo, mode=mode, mitigation=mitigation, alpha=alpha,
                           steps=steps, seed=seed, agent={**TINY[algo], **agent},
                           num_threads=1))


def parameters(agent: TD3 | A2C) -> dict[str, torch.Tensor]:
    return {f"{name}.{key}": value for name, net in agent.networks().items()
            for key, value in net.state_dict().items()}


def without_wall_time(rows: list[dict]) -> list[dict]:
    return [{k: v for k, v in row.items() if k != "wall_time"} for row in rows]


# ------------------------------------------------------------------ smoke runs
@pytest.mark.parametrize("algo", ["td3", "a2c"])
@pytest.mark.parametrize(("mode", "mitigation"), PAIRS)
def test_every_valid_combination_trains_on_the_pendulum(algo: str, mode: str,
                                                        mitigation: str) -> None:
    result = tiny_run("pendulum", algo, mode, mitigation)
    rows = result.progress
    assert sum(r["episode_length"] for r in rows) == 300
    assert all(math.isfinite(r["episode_return"]) for r in rows)
    assert all(torch.isfinite(p).all() for p in parameters(result.agent).values())
    if mode != "unsafe":  # the safeguard keeps every state safe, also while exploring
        assert sum(r["constraint_violations"] for r in rows) == 0
        assert sum(r["interventions"] for r in rows) > 0
    else:
        assert sum(r["interventions"] for r in rows) == 0


@pytest.mark.parametrize("mitigation", VALID_MITIGATIONS["sp"])
def test_a2c_projected_mean_variant_trains(mitigation: str) -> None:
    result = tiny_run("pendulum", "a2c", "sp", mitigation, sp_log_likelihood="projected-mean")
    assert sum(r["constraint_violations"] for r in result.progress) == 0


@pytest.mark.parametrize(("env", "algo", "mode", "mitigation"), [
    ("quadrotor", "td3", "sp", "penalty-critic"),
    ("seeker", "td3", "sp", "per-sample-loss"),
    ("quadrotor", "a2c", "se", "penalty"),
    ("seeker", "a2c", "sp", "per-sample-loss"),
])
def test_each_task_trains_without_violations(env: str, algo: str, mode: str,
                                             mitigation: str) -> None:
    rows = tiny_run(env, algo, mode, mitigation, steps=250).progress
    assert sum(r["episode_length"] for r in rows) == 250
    assert sum(r["constraint_violations"] for r in rows) == 0
    assert sum(r["interventions"] for r in rows) > 0


# ------------------------------------------------------------------ determinism, Lemma 1
@pytest.mark.parametrize(("algo", "mode", "mitigation"), [
    ("td3", "sp", "penalty-critic"), ("td3", "se", "penalty"), ("a2c", "sp", "per-sample-loss")])
def test_same_seed_gives_identical_runs(algo: str, mode: str, mitigation: str) -> None:
    first = tiny_run("pendulum", algo, mode, mitigation, seed=3)
    second = tiny_run("pendulum", algo, mode, mitigation, seed=3)
    assert without_wall_time(first.progress) == without_wall_time(second.progress)
    p1, p2 = parameters(first.agent), parameters(second.agent)
    assert p1.keys() == p2.keys()
    assert all(torch.equal(p1[k], p2[k]) for k in p1)
    other = parameters(tiny_run("pendulum", algo, mode, mitigation, seed=4).agent)
    assert not all(torch.equal(p1[k], other[k]) for k in p1)


@pytest.mark.parametrize("env", ["pendulum", "seeker"])
def test_lemma1_a2c_se_and_sp_give_identical_parameters(env: str) -> None:
    """Lemma 1: A2C with GAE updates identically in SE-RL and SP-RL (bit for bit)."""
    se = tiny_run(env, "a2c", "se", steps=400, seed=7)
    sp = tiny_run(env, "a2c", "sp", steps=400, seed=7)
    assert sum(r["interventions"] for r in se.progress) > 50  # the safeguard really worked
    p_se, p_sp = parameters(se.agent), parameters(sp.agent)
    assert p_se.keys() == p_sp.keys()
    assert all(torch.equal(p_se[k], p_sp[k]) for k in p_se)
    assert without_wall_time(se.progress) == without_wall_time(sp.progress)
    # not trivially equal: the mitigation and the projected-mean variant change the updates
    psl = parameters(tiny_run(env, "a2c", "sp", "per-sample-loss", steps=400, seed=7).agent)
    assert not all(torch.equal(p_se[k], psl[k]) for k in p_se)


@pytest.mark.parametrize("env", ["pendulum", "seeker"])
def test_a2c_penalty_critic_is_the_se_penalty_bit_for_bit(env: str) -> None:
    """§7.2/§8.2.2: for A2C the SP penalty critic and the SE reward penalty are one algorithm.

    V does not depend on the action, so V + V_pen is the value of r − α d²: same seed, same α,
    identical parameters after 400 steps (50 updates).
    """
    se = tiny_run(env, "a2c", "se", "penalty", steps=400, seed=7)
    sp = tiny_run(env, "a2c", "sp", "penalty-critic", steps=400, seed=7)
    assert sum(r["interventions"] for r in se.progress) > 50  # the penalty was really paid
    assert sum(r["penalty"] for r in se.progress) > 0
    p_se, p_sp = parameters(se.agent), parameters(sp.agent)
    assert p_se.keys() == p_sp.keys() == {k for k in p_se if k.split(".")[0] in
                                          ("actor", "critic")}
    assert all(torch.equal(p_se[k], p_sp[k]) for k in p_se)
    # the task return is r for SP and (r − α d²) + α d² for SE: equal up to rounding
    for a, b in zip(se.progress, sp.progress, strict=True):
        assert a["penalty"] == b["penalty"] and a["interventions"] == b["interventions"]
        assert a["episode_return"] == pytest.approx(b["episode_return"], rel=1e-9, abs=1e-9)
    # not trivially equal: without the penalty the same seed gives other parameters
    vanilla = parameters(tiny_run(env, "a2c", "se", steps=400, seed=7).agent)
    assert not all(torch.equal(p_se[k], vanilla[k]) for k in p_se)


# ------------------------------------------------------------------ SP-RL gradients
def _sp_agent(mitigation: str = "none") -> tuple[TD3, Batch]:
    from gymnasium import spaces

    obs_space = spaces.Box(-1.0, 1.0, (3,), np.float32)
    act_space = spaces.Box(-1.0, 1.0, (2,), np.float32)
    alpha = None if mitigation == "none" else 1.0
    agent = TD3(obs_space, act_space, TD3Config(hidden_sizes=(16, 16)),
                SafetyConfig("sp", mitigation, alpha), seed=0, buffer_capacity=8)
    obs = torch.rand(6, 3) * 2 - 1
    with torch.no_grad():
        mu = agent.actor(obs).double()
    A = torch.eye(2, dtype=torch.float64).expand(6, 2, 2).clone()
    b = mu - 0.3  # u1 <= μ1 − 0.3, u2 <= μ2 − 0.3: μ lies in the cone of the vertex b
    batch = Batch(obs, b.float(), torch.zeros(6), obs, torch.zeros(6), A=A, b=b, next_A=A,
                  next_b=b, next_safe_point=b)
    return agent, batch


def _actor_gradient(agent: TD3, batch: Batch) -> torch.Tensor:
    agent.actor.zero_grad()
    agent.compute_loss_pi(batch).backward(inputs=list(agent.actor.parameters()))
    return torch.cat([p.grad.flatten() for p in agent.actor.parameters()])


def test_sp_actor_gradient_vanishes_in_a_vertex_cone() -> None:
    """The zero-gradient problem: ∂Φ/∂ũ = 0 at a vertex, so vanilla SP-RL's actor gets none."""
    agent, batch = _sp_agent()
    assert torch.count_nonzero(_actor_gradient(agent, batch)) == 0
    # with only one face active the Jacobian I − nnᵀ lets the tangential part through
    face = batch._replace(A=batch.A[:, :1], b=batch.b[:, :1])
    assert _actor_gradient(agent, face).abs().sum() > 0


def test_sp_per_sample_loss_and_penalty_critic_restore_the_gradient() -> None:
    for mitigation in ("per-sample-loss", "penalty-critic"):
        agent, batch = _sp_agent(mitigation)
        if mitigation == "penalty-critic":
            batch = batch._replace(unsafe_action=batch.action, penalty=torch.zeros(6))
        assert _actor_gradient(agent, batch).abs().sum() > 0


def test_se_actor_gradient_ignores_the_safe_set() -> None:
    from gymnasium import spaces

    box = spaces.Box(-1.0, 1.0, (2,), np.float32)
    agent = TD3(spaces.Box(-1.0, 1.0, (3,), np.float32), box, TD3Config(hidden_sizes=(16, 16)),
                SafetyConfig("se"), seed=0, buffer_capacity=8)
    obs = torch.rand(6, 3)
    batch = Batch(obs, torch.zeros(6, 2), torch.zeros(6), obs, torch.zeros(6))
    assert _actor_gradient(agent, batch).abs().sum() > 0


# ------------------------------------------------------------------ the projection layer
def _random_polytopes(rng: np.random.Generator, n: int, k: int, m: int):
    A = rng.normal(size=(n, k, m))
    center = rng.uniform(-0.5, 0.5, (n, m))
    b = np.einsum("nkm,nm->nk", A, center) + rng.uniform(0.05, 1.0, (n, k))
    return torch.from_numpy(A), torch.from_numpy(b), torch.from_numpy(center)


@pytest.mark.parametrize("m", [1, 2])
def test_project_matches_project_polytope_values_and_gradients(m: int) -> None:
    rng = np.random.default_rng(0)
    A, b, center = _random_polytopes(rng, 64, 6, m)
    u = torch.from_numpy(rng.uniform(-3, 3, (64, m))).requires_grad_(True)
    ours = project(u, A, b, safe_point=center)
    reference = project_polytope(u, A, b)
    assert torch.allclose(ours, reference, atol=1e-10)
    weights = torch.from_numpy(rng.normal(size=(64, m)))
    (g1,) = torch.autograd.grad((ours * weights).sum(), u)
    (g2,) = torch.autograd.grad((reference * weights).sum(), u)
    assert torch.allclose(g1, g2, atol=1e-10)


def test_drop_redundant_rows_keeps_the_set() -> None:
    rng = np.random.default_rng(2)
    box = (np.vstack([np.eye(2), -np.eye(2)]), np.ones(4))
    for _ in range(25):
        extra = rng.normal(size=(8, 2))
        A = np.vstack([box[0], extra])
        b = np.concatenate([box[1], extra @ rng.uniform(-0.3, 0.3, 2) + rng.uniform(0.1, 2, 8)])
        A2, b2 = drop_redundant_rows(A, b)
        u = torch.from_numpy(rng.uniform(-3, 3, (40, 2)))
        full = project_polytope(u, torch.from_numpy(A), torch.from_numpy(b))
        reduced = project_polytope(u, torch.from_numpy(A2), torch.from_numpy(b2))
        assert torch.allclose(full, reduced, atol=1e-9)
    # 1-D: an interval keeps its two tightest bounds
    A1, b1 = drop_redundant_rows(np.array([[1.0], [2.0], [-1.0], [-3.0]]), np.array([1, 1, 2, 3]))
    assert A1[:, 0].tolist() == [2.0, -3.0] and b1.tolist() == [1, 3]  # u <= 0.5, u >= -1
    # a segment (a lower-dimensional set) keeps the rows through its end points
    A = np.array([[1.0, 0], [-1, 0], [0, 1], [0, -1], [0, 2], [3, 0]])
    b = np.array([0.0, 0, 1, 1, 1.5, 5])
    A2, b2 = drop_redundant_rows(A, b)
    u = torch.tensor([[2.0, 2.0], [-1.0, -3.0], [0.5, 0.2]], dtype=torch.float64)
    assert torch.allclose(project_polytope(u, torch.from_numpy(A), torch.from_numpy(b)),
                          project_polytope(u, torch.from_numpy(A2), torch.from_numpy(b2)))


def test_drop_redundant_rows_many_keeps_the_rows_one_set_at_a_time_keeps() -> None:
    """The batched version returns, set by set, exactly drop_redundant_rows's rows (same arrays,
    same order), on the seeker's real sets along random rollouts and on awkward sets padded
    together: unbounded, empty, segments, points, three rows through a vertex, duplicate and
    zero rows, sets too small to simplify, and 1-D sets."""
    rng = np.random.default_rng(11)
    env = TaskVectorEnv("tutorial_rl/Seeker-v0", 8, safe_sets=True)
    env.reset(seed=3)
    batches = []
    for t in range(200):
        batches.append(env.safe_action_sets())
        env.step(rng.uniform(-1, 1, (8, 2)) * (1.0 if t % 4 == 0 else 0.3))
    box = [[1.0, 0], [-1, 0], [0, 1], [0, -1]]
    awkward = [
        (box + [[1, 1], [1, -1]], [1, 1, 1, 1, 1.5, 0.2]),  # a cut corner and a redundant row
        (box + [[1, 1]], [1, 1, 1, 1, 2.0]),  # a row through exactly one vertex
        ([[1.0, 0], [-1, 0], [0, 1], [0, -1], [0, 2], [3, 0]], [0, 0, 1, 1, 1.5, 5]),  # segment
        ([[1.0, 0], [-1, 0], [0, 1], [0, -1], [1, 1]], [0, 0, 0, 0, 0]),  # a point
        ([[1.0, 0], [-1, 0], [0, 1], [1, 1]], [1, 1, 1, 1]),  # unbounded below
        (box + [[1, 0]], [1, 1, 1, 1, -2.0]),  # empty
        (box + [[1, 0], [0, 0]], [1, 1, 1, 1, 1.0, 1.0]),  # a duplicate and a zero row
        ([[1.0, 0], [-1, 0], [0, 1]], [1, 1, 1]),  # k <= m + 1
        (box + [[2.0, 0], [0, -3]], [1, 1, 1, 1, 2.0, 3.0]),  # scaled duplicates
    ]
    for _ in range(30):
        normals = rng.normal(size=(6, 2))
        awkward.append((box + normals.tolist(), [1.0] * 4 + (normals @ rng.uniform(-0.5, 0.5, 2)
                                                             + rng.uniform(-0.2, 1, 6)).tolist()))
    order = rng.permutation(len(awkward))
    for part in np.array_split(order, 5):
        batches.append(pad_sets([(np.array(awkward[i][0], dtype=float),
                                  np.array(awkward[i][1], dtype=float)) for i in part]))
    for A, b, count in batches:
        got = drop_redundant_rows_many(A, b, count)
        for i, (A_i, b_i) in enumerate(got):
            A_ref, b_ref = drop_redundant_rows(A[i, :count[i]], b[i, :count[i]])
            assert A_i.shape == A_ref.shape and np.array_equal(A_i, A_ref)
            assert np.array_equal(b_i, b_ref)
    one_d = pad_sets([(np.array([[1.0], [2.0], [-1.0], [-3.0]]), np.array([1.0, 1, 2, 3])),
                      (np.array([[1.0], [-1.0]]), np.array([1.0, 1.0]))])
    got = drop_redundant_rows_many(*one_d)
    assert got[0][0][:, 0].tolist() == [2.0, -3.0] and got[1][1].tolist() == [1.0, 1.0]


def pad_sets(sets: list[tuple[np.ndarray, np.ndarray]]) -> tuple[np.ndarray, ...]:
    """Sets with different row counts as (A, b, count), padded with rows 0 · u <= 1."""
    A, b = pad_safe_sets(sets)
    return A, b, np.array([len(s[1]) for s in sets])


def test_first_occurrences_matches_numpy_unique() -> None:
    """drop_redundant_rows's de-duplication of vertices is np.unique's (rows compared as numbers,
    -0.0 = 0.0), in first-occurrence order."""
    rng = np.random.default_rng(5)
    for n in (1, 2, 7, 40):
        for _ in range(50):
            points = np.round(rng.normal(size=(n, 2)), 1) * rng.choice([-1.0, 0.0, 1.0], (n, 2))
            expected = np.sort(np.unique(points, axis=0, return_index=True)[1])
            assert _first_occurrences(points).tolist() == expected.tolist()
    assert _first_occurrences(np.array([[0.0, 1.0], [-0.0, 1.0], [0.0, 2.0]])).tolist() == [0, 2]


def test_project_falls_back_to_the_safe_point_only_where_a_set_is_empty() -> None:
    # element 0: the box [-1, 1]^2; element 1: {x <= 0, x >= 1} is empty
    A = torch.tensor([[[1.0, 0.0], [-1.0, 0.0], [0.0, 1.0], [0.0, -1.0]]] * 2, dtype=torch.float64)
    b = torch.tensor([[1.0, 1.0, 1.0, 1.0], [0.0, -1.0, 1.0, 1.0]], dtype=torch.float64)
    u = torch.tensor([[2.0, 0.5], [3.0, 0.0]], dtype=torch.float64, requires_grad=True)
    point = torch.tensor([[0.0, 0.0], [0.25, -0.5]], dtype=torch.float64)
    with pytest.raises(InfeasibleSetError, match=r"batch index/indices \[1\]") as err:
        project(u, A, b)
    assert err.value.empty.tolist() == [False, True]
    out = project(u, A, b, safe_point=point)
    assert torch.equal(out.detach(), torch.tensor([[1.0, 0.5], [0.25, -0.5]], dtype=torch.float64))
    out.sum().backward()
    assert torch.equal(u.grad, torch.tensor([[0.0, 1.0], [0.0, 0.0]], dtype=torch.float64))


def test_project_many_equals_separate_calls() -> None:
    rng = np.random.default_rng(3)
    A1, b1, c1 = _random_polytopes(rng, 20, 4, 2)
    A2, b2, c2 = _random_polytopes(rng, 30, 7, 2)
    u1 = torch.from_numpy(rng.uniform(-2, 2, (20, 2)))
    u2 = torch.from_numpy(rng.uniform(-2, 2, (30, 2))).requires_grad_(True)
    out1, out2 = project_many([(u1, A1, b1, c1), (u2, A2, b2, c2)])
    assert torch.allclose(out1, project_polytope(u1, A1, b1), atol=1e-10)
    assert torch.allclose(out2, project_polytope(u2, A2, b2), atol=1e-10)
    out2.sum().backward()
    assert u2.grad is not None and u1.grad is None


# ------------------------------------------------------------------ buffers and GAE
def test_replay_buffer_pads_growing_safe_sets() -> None:
    buf = ReplayBuffer(4, 2, 2, np.random.default_rng(0), safe_sets=True)
    small = (np.eye(2), np.ones(2))
    large = (np.vstack([np.eye(2), -np.eye(2)]), np.ones(4))
    for i, (s, n) in enumerate([(small, large), (large, small)]):
        buf.add(np.zeros(2), np.zeros(2), 1.0, np.zeros(2), False, safe_set=s, next_safe_set=n,
                next_safe_point=np.zeros(2))
        assert len(buf) == i + 1
    assert buf.sets.A.shape == (4, 4, 2)
    assert buf.sets.A[0, 2:].tolist() == [[0, 0], [0, 0]] and buf.sets.b[0, 2:].tolist() == [1, 1]
    batch = buf.sample(5)
    assert batch.A.shape == (5, 4, 2) and batch.A.dtype == torch.float64
    A, b = pad_safe_sets([small, large])
    assert A.shape == (2, 4, 2) and b[0].tolist() == [1, 1, 1, 1]


def _filled_buffer(capacity: int = 64) -> ReplayBuffer:
    rng = np.random.default_rng(1)
    buf = ReplayBuffer(capacity, 3, 2, np.random.default_rng(0), safe_sets=True, unsafe=True)
    for i in range(capacity - 5):  # a partly filled ring: zeros after the last slot
        k = 4 if i % 3 else 6  # row counts vary, as the seeker's
        sets = [(rng.normal(size=(k, 2)), rng.uniform(0.5, 1, k)) for _ in range(2)]
        buf.add(rng.normal(size=3), rng.normal(size=2), float(rng.normal()), rng.normal(size=3),
                bool(i % 7 == 0), unsafe_action=rng.normal(size=2), penalty=float(rng.random()),
                safe_set=sets[0], next_safe_set=sets[1], next_safe_point=rng.normal(size=2))
    return buf


def test_replay_buffer_checkpoints_as_tensors_and_restores_the_same_arrays(tmp_path) -> None:
    """torch.save writes a buffer's arrays as tensor storages, no pickled copies (see
    ``buffers._ArraysAsTensors``); loading gives the same arrays, and the same next minibatch."""
    import io
    import pickle
    import tracemalloc

    buf = _filled_buffer()
    state = buf.__getstate__()
    assert isinstance(state["obs"], torch.Tensor)
    assert state["obs"].data_ptr() == buf.obs.ctypes.data  # shared memory, not a copy
    fh = io.BytesIO()
    torch.save(buf, fh)
    fh.seek(0)
    loaded = torch.load(fh, weights_only=False)
    for name in ("obs", "action", "reward", "next_obs", "done", "unsafe_action", "penalty",
                 "next_safe_point"):
        a, b = getattr(buf, name), getattr(loaded, name)
        assert isinstance(b, np.ndarray) and b.dtype == a.dtype and np.array_equal(a, b), name
    for store in ("sets", "next_sets"):
        a, b = getattr(buf, store), getattr(loaded, store)
        assert isinstance(b.A, np.ndarray) and np.array_equal(a.A, b.A)
        assert np.array_equal(a.b, b.b) and (a.shared is None) == (b.shared is None)
    assert (loaded.size, loaded.pos) == (buf.size, buf.pos)
    one, two = buf.sample(16), loaded.sample(16)  # the generator travelled with the buffer
    for x, y in zip(one, two, strict=True):
        assert torch.equal(x, y)
    # the saved state is written from the arrays' own memory: numpy's allocations stay far
    # below the buffer's size (a pickled ndarray costs several copies of itself)
    big = ReplayBuffer(200_000, 16, 2, np.random.default_rng(0))
    size = sum(a.nbytes for a in (big.obs, big.action, big.reward, big.next_obs, big.done))
    tracemalloc.start()
    torch.save(big, tmp_path / "buffer.pt")  # a file: a BytesIO would hold the bytes itself
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < 0.1 * size, (peak, size)
    # a buffer pickled before this change (plain arrays in its state) still loads
    old = pickle.loads(pickle.dumps(buf, protocol=2))
    old_state = dict(buf.__dict__)
    restored = ReplayBuffer.__new__(ReplayBuffer)
    restored.__setstate__(old_state)
    assert np.array_equal(restored.obs, buf.obs) and np.array_equal(old.obs, buf.obs)


def test_shared_rows_are_returned_once_and_project_the_same() -> None:
    store = SafeSetStore(3, 2)
    A = np.vstack([np.eye(2), -np.eye(2)])
    for i in range(3):
        store.put(i, A, np.full(4, 0.5 + i))
    A_t, b_t = store.get(np.array([0, 2, 1]))
    assert A_t.shape == (4, 2)  # one A for the batch (pendulum, quadrotor)
    u = torch.tensor([[2.0, 0.0], [0.0, -3.0], [0.1, 0.1]], dtype=torch.float64)
    expected = project_polytope(u, A_t.expand(3, 4, 2), b_t)
    assert torch.allclose(project(u, A_t, b_t), expected)
    out, _ = project_many([(u, A_t, b_t, None), (u[:1], A_t[:3], b_t[:1, :3], None)])
    assert torch.allclose(out, expected)
    store.put(0, A[:3], np.ones(3))  # the rows vary from now on: batched again
    assert store.get(np.array([0, 1]))[0].shape == (2, 4, 2)


def test_same_rows_is_array_equal_with_equal_shapes() -> None:
    """The byte comparison is only a shortcut: the answer is np.array_equal's, so a row matrix
    counts as unchanged exactly when it did before (-0.0 = 0.0, float32 = float64 values)."""
    A = np.array([[1.0, 0.0], [-1.0, 0.5]])
    assert same_rows(A, A.copy()) and same_rows(A, np.array([[1.0, -0.0], [-1.0, 0.5]]))
    assert same_rows(A, A.astype(np.float32).astype(np.float64))
    assert not same_rows(A, A[:1]) and not same_rows(A, A + 1e-15)
    store = SafeSetStore(2, 2)
    store.put(0, A, np.ones(2))
    store.put(1, A.astype(np.float32), np.ones(2))  # equal values: still one shared A
    assert store.get(np.array([0, 1]))[0].shape == (2, 2)


def test_compute_gae_matches_the_definition() -> None:
    r = torch.tensor([1.0, 0.5, -1.0, 2.0])
    v = torch.tensor([0.2, 0.1, 0.4, -0.3])
    dones = torch.tensor([0.0, 1.0, 0.0, 0.0])
    gamma, lam, last = 0.9, 0.8, torch.tensor(0.7)
    adv, ret = compute_gae(r, v, dones, last, gamma, lam)
    delta = [r[0] + gamma * v[1] - v[0], r[1] - v[1], r[2] + gamma * v[3] - v[2],
             r[3] + gamma * last - v[3]]
    expected = [delta[0] + gamma * lam * delta[1], delta[1],
                delta[2] + gamma * lam * delta[3], delta[3]]
    assert torch.allclose(adv, torch.stack(expected))
    assert torch.allclose(ret, adv + v)


# ------------------------------------------------------------------ validation
@pytest.mark.parametrize(("mode", "mitigation", "alpha"), [
    ("se", "per-sample-loss", 1.0), ("se", "penalty-critic", 1.0), ("sp", "penalty", 1.0),
    ("unsafe", "penalty", 1.0), ("unsafe", "per-sample-loss", 1.0)])
def test_invalid_combinations_name_the_valid_ones(mode: str, mitigation: str,
                                                  alpha: float) -> None:
    with pytest.raises(ConfigError, match="valid combinations") as info:
        SafetyConfig(mode, mitigation, alpha)  # type: ignore[arg-type]
    assert "se: none, penalty" in str(info.value)
    assert "sp: none, per-sample-loss, penalty-critic" in str(info.value)


@pytest.mark.parametrize(("mitigation", "alpha", "message"), [
    ("none", 1.0, "mitigation is 'none'"), ("penalty", -0.1, ">= 0"),
    ("penalty", float("nan"), ">= 0"), ("penalty", None, "needs alpha")])
def test_alpha_is_validated(mitigation: str, alpha: float | None, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        SafetyConfig("se", mitigation, alpha)  # type: ignore[arg-type]


def test_agent_configs_are_validated_before_running() -> None:
    with pytest.raises(ConfigError, match="batch_size"):
        TD3Config(batch_size=0)
    with pytest.raises(ConfigError, match="gae_lambda"):
        A2CConfig(gae_lambda=1.5)
    with pytest.raises(ConfigError, match="needs mode 'sp'"):
        train(RunConfig(env="pendulum", algo="a2c", mode="se", steps=10,
                        agent={"sp_log_likelihood": "projected-mean"}))
    with pytest.raises(ConfigError, match="unknown TD3Config field"):
        train(RunConfig(env="pendulum", algo="td3", steps=10, agent={"lr": 1.0}))
    assert dataclasses.asdict(TD3Config())["policy_delay"] == 2


# ------------------------------------------------------------------ learning
def test_td3_se_learns_the_pendulum(tmp_path) -> None:
    """TD3 in SE-RL stabilises the pendulum with the paper's budget (10k steps, nets [32, 32]).

    Measured on the 2-core dev machine (seed 0, 10 evaluation episodes from seed 1000): the
    untrained policy scores -16.97 (seed 1: -15.64); after 10k steps seeds 0-6 score -6.93,
    -6.19, -6.51, -6.11, -9.41, -6.98, -6.03, in 16-35 s each (6k steps: -7.45, -6.32, -6.51).
    The threshold -10 sits between, with margin to both.
    """
    result = train(RunConfig(env="pendulum", algo="td3", mode="se", steps=10_000, seed=0,
                             out=tmp_path / "run", agent={"learning_starts": 1_000},
                             num_threads=1))
    assert sum(r["constraint_violations"] for r in result.progress) == 0
    evaluation = evaluate(tmp_path / "run", episodes=10, seed=1000)
    assert evaluation["mean_return"] > -10.0, evaluation["returns"]
    assert evaluation["constraint_violations"] == 0


# ------------------------------------------------------------------ cost of the environment side
@pytest.mark.parametrize("env", ["pendulum", "quadrotor", "seeker"])
def test_sp_mode_computes_each_states_safe_set_once(env: str,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """SP-RL needs U_s(x') at every step and projects onto it at the next one: one computation
    per state (before: 2.3-2.6 per step), and the safeguard still sees the environment's set."""
    import gymnasium as gym

    from tutorial_rl.agents.common import ModeEnv
    from tutorial_rl.experiments.training import ENVS

    task = gym.make(ENVS[env])
    calls = []
    compute = type(task.unwrapped).safe_action_set

    def counted(self: object) -> tuple[np.ndarray, np.ndarray]:
        calls.append(1)
        return compute(self)

    monkeypatch.setattr(type(task.unwrapped), "safe_action_set", counted)
    mode_env = ModeEnv(task, SafetyConfig("sp"), track_safe_sets=True)
    rng = np.random.default_rng(0)
    mode_env.reset(seed=0)
    resets, steps = 1, 120
    for _ in range(steps):
        step = mode_env.step(rng.uniform(-1.5, 1.5, task.action_space.shape))
        assert not step.violation
        raw = compute(task.unwrapped)  # the set of x' as the environment computes it
        assert np.array_equal(raw[0], mode_env._raw_set[0])
        assert np.array_equal(raw[1], mode_env._raw_set[1])
        if step.terminated or step.truncated:
            mode_env.reset()
            resets += 1
    assert len(calls) == steps + resets
