"""Exact checkpoints of a training run: stop it at any moment, continue it bit for bit.

Chapter 8 (chapters/08_experiments.py, "Running a sweep"): the paper's grid takes days of core
time, so a sweep must survive being killed and restarted many times. ``--checkpoint-every N``
makes a run write, every N environment steps and atomically (temporary name + rename), one file
with everything its future depends on:

- the agent object: networks, target networks, optimiser states, replay buffer, its numpy and
  torch generators, its step counters and the observation the next step acts on;
- the environment object: the task's state and ``np_random``, the safeguard, the tracked safe set;
- the progress rows, the running episode's sums and the elapsed wall time;
- the process-wide generators (torch, numpy, python ``random``), for code that draws from them.

Objects are pickled whole (``torch.save``), so references they share (the agent's generator and
its buffer's, parameters and their optimiser state) stay shared after loading. A run restored
from a checkpoint and trained on writes the same ``progress.csv`` (wall time aside) and the same
``model.pt`` as one that never stopped (``tests/test_checkpoint.py`` kills one with SIGKILL).
A checkpoint belongs to one configuration and one package version; it is meant for resuming with
the same code, not for archiving.

A sweep stopped with SIGTERM or SIGHUP loses not even the steps since the last save: every run
in progress saves at its next step and stops (:func:`stop_when_asked`, :class:`StopRequested`;
``tests/test_checkpoint.py`` stops one so and continues it bit for bit).
"""

from __future__ import annotations

import random
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import torch

__all__ = ["CHECKPOINT_FILE", "TARGET_SECONDS", "Checkpoint", "StopRequested",
           "auto_checkpoint_every", "readable_here", "request_stop", "stop_requested",
           "stop_when_asked"]

CHECKPOINT_FILE = "checkpoint.pt"
_FORMAT = 1
#: What ``--checkpoint-every auto`` aims at: lose at most this much work to a kill.
TARGET_SECONDS = 600.0


class StopRequested(KeyboardInterrupt):  # noqa: N818 -- an interruption, like its base class
    """A sweep was asked to stop (SIGTERM, SIGHUP or its stop file): the run saved its
    checkpoint at this step and stops; rerunning the sweep continues from there."""


# A stop is asked for through a file, so that one signal to any process of a sweep reaches
# every worker (``tutorial-rl sweep``: ``OUT/runs/.stop``); the flag covers the moment between
# the signal and the file. Checked at most every STOP_POLL_S by each run's checkpoint hook.
STOP_POLL_S = 1.0
_stop_file: Path | None = None
_signalled = False


def request_stop(stop_file: Path | None = None) -> None:
    """Ask the training in this process (and, through ``stop_file``, every process of the
    sweep) to save its checkpoint and stop at its next step."""
    global _signalled
    _signalled = True
    target = stop_file or _stop_file
    if target is not None:
        try:
            target.touch()
        except OSError:  # the folder is gone: this process stops all the same
            pass


def stop_requested() -> bool:
    """Whether this process has been asked to stop (:func:`request_stop`, or the stop file)."""
    return _signalled or (_stop_file is not None and _stop_file.exists())


@contextmanager
def stop_when_asked(stop_file: Path) -> Iterator[None]:
    """While a sweep's unit of work runs here: the first SIGTERM or SIGHUP asks every run of the
    sweep to save its checkpoint and stop (:class:`StopRequested` at its next step), a second
    one interrupts at once; so does ``stop_file`` appearing. Handlers only in the main thread,
    where Python can install them; restored on exit."""
    global _stop_file, _signalled
    import signal
    import threading

    def ask(signum: int, _frame: Any) -> None:
        if _signalled:
            raise KeyboardInterrupt(f"signal {signal.Signals(signum).name}, again")
        request_stop()

    previous_file, _stop_file = _stop_file, stop_file
    previous: dict[Any, Any] = {}
    if threading.current_thread() is threading.main_thread():
        for name in ("SIGTERM", "SIGHUP"):
            if hasattr(signal, name):
                sig = getattr(signal, name)
                previous[sig] = signal.signal(sig, ask)
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        _stop_file, _signalled = previous_file, False


def auto_checkpoint_every(ms_per_step: float, target_s: float = TARGET_SECONDS) -> int:
    """Environment steps between checkpoints so that about ``target_s`` of work is at risk."""
    return max(1_000, int(target_s * 1000 / max(ms_per_step, 1e-3)))


def readable_here(storage: Any, location: str) -> Any:
    """``torch.load``'s ``map_location``: every tensor back where it was saved, except that a
    checkpoint written on a GPU stays on the CPU where there is none.

    A checkpoint then always loads, and one of another device is recognised by its identity and
    ignored with a clear message. (Mapping *everything* to one device would also move the random
    generators' CPU states, which the generators refuse.)
    """
    if location.startswith("cuda") and not torch.cuda.is_available():
        return storage  # deserialised on the CPU: keep it there
    return None  # torch's default: the location it was saved from


def _global_rng_state() -> dict[str, Any]:
    return {"torch": torch.get_rng_state(), "numpy": np.random.get_state(),  # noqa: NPY002
            "python": random.getstate()}


def _set_global_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    np.random.set_state(state["numpy"])  # noqa: NPY002
    random.setstate(state["python"])


class Checkpoint:
    """Saves and restores one run's complete training state at ``path``.

    :param path: the checkpoint file (its folder is created).
    :param every: environment steps between saves (0: never save).
    :param identity: what the run is (its resolved configuration); a checkpoint with another
        identity is never restored.
    :param write: ``write(path, fn)`` writes atomically through ``fn(file)``.
    :param max_seconds: also save once this much wall time has passed since the last save
        (``None``: steps only). ``--checkpoint-every auto`` sets it, because its step count comes
        from cost estimates that a busy machine can exceed several times over. Where the saves
        fall never changes the results: a run continues bit for bit from any of them.

    The identity includes the run's device (``config.json``'s ``device``): a run continues bit
    for bit only on the device that wrote its checkpoint, so on another one it starts afresh.
    """

    def __init__(self, path: str | Path, every: int, identity: dict[str, Any],
                 write: Callable[[Path, Callable[[Any], None]], None],
                 max_seconds: float | None = None) -> None:
        if isinstance(every, bool) or not isinstance(every, int) or every < 0:
            raise ValueError(f"checkpoint_every must be an integer >= 0; got {every!r}")
        if max_seconds is not None and not max_seconds > 0:
            raise ValueError(f"max_seconds must be > 0 or None; got {max_seconds!r}")
        self.path, self.every, self.identity = Path(path), every, identity
        self.max_seconds = max_seconds
        self._write = write
        self._objects: tuple[Any, Any, Any] | None = None
        self._last = 0
        self._last_time = time.monotonic()
        self._next_poll = 0.0

    def attach(self, agent: Any, env: Any, recorder: Any) -> None:
        """The objects to save (the agent's ``steps`` counter says when)."""
        self._objects = (agent, env, recorder)
        self._last = agent.steps
        self._last_time = time.monotonic()

    def __call__(self, steps: int) -> None:
        """Save when ``every`` steps, or ``max_seconds`` of wall time, have passed since the
        last save (the agents' hook); when a stop has been asked for (:func:`stop_requested`),
        save and raise :class:`StopRequested`."""
        now = time.monotonic()
        if now >= self._next_poll:
            self._next_poll = now + STOP_POLL_S
            if stop_requested():
                if self.every and steps > self._last:
                    self.save()
                raise StopRequested(f"stopped at step {steps}"
                                    + (f"; checkpoint {self.path.name} saved" if self.every
                                       else ""))
        if not self.every:
            return
        if steps - self._last >= self.every or (
                self.max_seconds is not None and steps > self._last
                and time.monotonic() - self._last_time >= self.max_seconds):
            self.save()

    def save(self) -> None:
        """Write the attached objects now (atomically)."""
        assert self._objects is not None, "attach() the agent, env and recorder first"
        agent, env, recorder = self._objects
        state = {"format": _FORMAT, "identity": self.identity, "steps": agent.steps,
                 "agent": agent, "env": env, "recorder": recorder.state_dict(),
                 "rng": _global_rng_state()}
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._write(self.path, lambda fh: torch.save(state, fh))
        now = time.monotonic()
        if self.max_seconds is not None:  # a long sweep says how far it has come
            rate = (agent.steps - self._last) / max(now - self._last_time, 1e-9)
            print(f"tutorial-rl: checkpoint {self.path.name}: step {agent.steps} "
                  f"({rate:.1f} steps/s since the last save)", file=sys.stderr, flush=True)
        self._last, self._last_time = agent.steps, now

    def load(self) -> tuple[Any, Any, dict[str, Any]] | None:
        """(agent, env, recorder state) of a saved checkpoint of this run, or ``None``.

        Restores the process-wide generators too. A checkpoint of another run, of another
        version, or one that cannot be read is reported on stderr and ignored (the run starts
        from scratch: slower, never wrong).
        """
        if not self.path.is_file():
            return None
        try:
            state = torch.load(self.path, weights_only=False, map_location=readable_here)
            if state.get("format") != _FORMAT or state.get("identity") != self.identity:
                print(f"tutorial-rl: ignoring {self.path}: it belongs to another run or version",
                      file=sys.stderr)
                return None
        except Exception as exc:  # noqa: BLE001 -- unreadable: start over
            print(f"tutorial-rl: ignoring unreadable checkpoint {self.path}: {exc}",
                  file=sys.stderr)
            return None
        _set_global_rng_state(state["rng"])
        return state["agent"], state["env"], state["recorder"]

    def remove(self) -> None:
        """Delete the checkpoint (the run has finished)."""
        self.path.unlink(missing_ok=True)
