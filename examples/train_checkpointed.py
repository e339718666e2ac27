"""A real (small) training job that checkpoints and resumes exactly: suanwang's contract.

It trains a logistic-regression classifier with minibatch SGD on a generated dataset
(fixed seed), in plain Python (stdlib only, so it runs in any sandbox with a Python):

- its state (step, weights, the minibatch generator's state) is saved as JSON in
  ``$SUANWANG_CHECKPOINT_DIR/state.json`` every ``--checkpoint-every`` steps and when it
  gets SIGTERM, atomically (write a temporary file, fsync, rename, fsync the directory),
  then ``$SUANWANG_CHECKPOINT_FILE`` is touched so the control plane knows when it saved;
- on SIGTERM (a preemption, a move or a cancel) it saves and exits 75 ("checkpointed,
  please resume"); the next attempt starts from the saved state;
- floats are saved with ``repr`` (exact), so an interrupted-and-resumed run prints the very
  same result line as an uninterrupted one: the final loss and a SHA-256 of the weights.

Run it anywhere::

    python examples/train_checkpointed.py --checkpoint-dir /tmp/ck --steps 2000

or as a suanwang job (the sandbox shows the Python installation, not your files, so the
source travels in the command)::

    suanwang jobs submit --checkpoint-interval 5 -- python -c "$(cat examples/train_checkpointed.py)" \
        --steps 3000 --step-sleep 0.01

Output: ``resumed at step N`` lines, then one ``RESULT {...}`` JSON line.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import random
import signal
import sys
import time
from pathlib import Path
from typing import Any

RESUME_EXIT_CODE = 75
STATE_FILE = "state.json"


def make_dataset(seed: int, samples: int, features: int) -> list[tuple[list[float], float]]:
    """Points from a fixed-seed Gaussian, labelled by a noisy linear rule."""
    rng = random.Random(seed)
    truth = [rng.uniform(-2.0, 2.0) for _ in range(features)]
    data = []
    for _ in range(samples):
        x = [rng.gauss(0.0, 1.0) for _ in range(features)]
        margin = sum(w * v for w, v in zip(truth, x, strict=True)) + rng.gauss(0.0, 0.5)
        data.append((x, 1.0 if margin > 0 else 0.0))
    return data


def sigmoid(z: float) -> float:
    if z >= 0:
        return 1.0 / (1.0 + math.exp(-z))
    e = math.exp(z)
    return e / (1.0 + e)


def predict(weights: list[float], x: list[float]) -> float:
    return sigmoid(weights[-1] + sum(w * v for w, v in zip(weights, x, strict=False)))


def loss(weights: list[float], data: list[tuple[list[float], float]]) -> float:
    """Mean cross-entropy over the whole dataset."""
    total = 0.0
    for x, y in data:
        p = min(max(predict(weights, x), 1e-12), 1.0 - 1e-12)
        total -= y * math.log(p) + (1.0 - y) * math.log(1.0 - p)
    return total / len(data)


def sgd_step(
    weights: list[float], batch: list[tuple[list[float], float]], lr: float
) -> list[float]:
    """One minibatch gradient step (the bias is the last weight)."""
    grad = [0.0] * len(weights)
    for x, y in batch:
        err = predict(weights, x) - y
        for i, v in enumerate(x):
            grad[i] += err * v
        grad[-1] += err
    return [w - lr * g / len(batch) for w, g in zip(weights, grad, strict=True)]


def rng_state_to_json(state: tuple[Any, ...]) -> list[Any]:
    version, internal, gauss_next = state
    return [version, list(internal), gauss_next]


def rng_state_from_json(data: list[Any]) -> tuple[Any, ...]:
    version, internal, gauss_next = data
    return (version, tuple(internal), gauss_next)


def save(directory: Path, state: dict[str, Any], mark: str | None) -> None:
    """Write ``state.json`` atomically, then touch the checkpoint mark."""
    directory.mkdir(parents=True, exist_ok=True)
    tmp = directory / f".{STATE_FILE}.{os.getpid()}.tmp"
    with open(tmp, "w", encoding="utf-8") as handle:
        json.dump(state, handle, sort_keys=True)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, directory / STATE_FILE)
    dir_fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
    if mark:
        Path(mark).touch()


def load(directory: Path) -> dict[str, Any] | None:
    try:
        with open(directory / STATE_FILE, encoding="utf-8") as handle:
            data: dict[str, Any] = json.load(handle)
    except FileNotFoundError:
        return None
    return data


def digest(weights: list[float]) -> str:
    return hashlib.sha256(json.dumps([repr(w) for w in weights]).encode()).hexdigest()


class Stop:
    """Set by SIGTERM; the loop saves and exits at the end of the current step."""

    requested = False

    @classmethod
    def on_signal(cls, _signum: int, _frame: object) -> None:
        cls.requested = True


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--checkpoint-every", type=int, default=50)
    parser.add_argument("--step-sleep", type=float, default=0.0, help="seconds per step extra")
    parser.add_argument("--samples", type=int, default=400)
    parser.add_argument("--features", type=int, default=8)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--lr", type=float, default=0.1)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument(
        "--checkpoint-dir",
        default=os.environ.get("SUANWANG_CHECKPOINT_DIR", "checkpoints"),
        help="default: $SUANWANG_CHECKPOINT_DIR, else ./checkpoints",
    )
    return parser.parse_args(argv)


def train(args: argparse.Namespace) -> int:
    directory = Path(args.checkpoint_dir)
    mark = os.environ.get("SUANWANG_CHECKPOINT_FILE")
    data = make_dataset(args.seed, args.samples, args.features)
    state = load(directory)
    if state is None:
        step, weights = 0, [0.0] * (args.features + 1)
        batches = random.Random(args.seed + 1)
    else:
        step, weights = int(state["step"]), [float(w) for w in state["weights"]]
        batches = random.Random()
        batches.setstate(rng_state_from_json(state["rng"]))
    resumes = os.environ.get("SUANWANG_RESUME_COUNT", "0")
    print(f"resumed at step {step} (resume count {resumes})", flush=True)

    def snapshot() -> dict[str, Any]:
        return {"step": step, "weights": weights, "rng": rng_state_to_json(batches.getstate())}

    while step < args.steps:
        if Stop.requested:
            save(directory, snapshot(), mark)
            print(f"stopped at step {step}: checkpointed, asking to resume", flush=True)
            return RESUME_EXIT_CODE
        batch = [data[batches.randrange(len(data))] for _ in range(args.batch)]
        weights = sgd_step(weights, batch, args.lr)
        step += 1
        if step % args.checkpoint_every == 0:
            save(directory, snapshot(), mark)
        if args.step_sleep:
            time.sleep(args.step_sleep)
    save(directory, snapshot(), mark)
    result = {"steps": step, "loss": repr(loss(weights, data)), "weights_sha256": digest(weights)}
    print("RESULT " + json.dumps(result, sort_keys=True), flush=True)
    return 0


def main(argv: list[str]) -> int:
    signal.signal(signal.SIGTERM, Stop.on_signal)
    return train(parse_args(argv))


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
