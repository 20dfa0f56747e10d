"""What a run writes as it goes: metrics.jsonl, TensorBoard scalars, loss.png, a progress bar (on a terminal;
about 20 step lines in logs).

Only process 0 writes files; every process may print. `metrics.jsonl` is appended line by line, so a
resumed run continues it: `RunLog` first drops lines of steps beyond the restored checkpoint (they were
written by the killed run after its last checkpoint and will be recomputed identically).
"""

from __future__ import annotations

import json
import pathlib
import sys
import time
from typing import Any

import numpy as np
import tqdm

from icma_jax.progress import on_terminal
from icma_jax.run import outputs


def count_summary(total: int, trainable: int) -> str:
    """`total / trainable / fraction` parameter counts in one line."""
    return (f"parameters: {total:,} total, {trainable:,} trainable "
            f"({100.0 * trainable / max(total, 1):.4f}%)")


def _read_jsonl(path: pathlib.Path) -> list[dict]:
    if not path.is_file():
        return []
    rows, lines = [], path.read_text().splitlines()
    for i, line in enumerate(lines, 1):
        if line.strip():
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError:  # a last line cut by a kill mid-write is the only tolerated damage
                if i != len(lines):
                    raise ValueError(f"{path}:{i}: not valid JSON") from None
    return rows


class RunLog:
    """Step metrics to jsonl + TensorBoard + a progress bar; `finish` draws loss.png."""

    def __init__(self, workdir: str | pathlib.Path, *, total_steps: int, start_step: int):
        self.workdir = pathlib.Path(workdir)
        self.is_writer = outputs.is_writer()
        self.path = self.workdir / "metrics.jsonl"
        self.start_time = time.time()
        self._tb = None
        if self.is_writer:
            kept = [r for r in _read_jsonl(self.path) if r.get("step", 0) <= start_step]
            outputs.write_text(self.path, "".join(json.dumps(r) + "\n" for r in kept))
            from tensorboardX import SummaryWriter  # imported lazily: it is slow to import

            self._tb = SummaryWriter(str(self.workdir / "tensorboard"))
        self.bar = tqdm.tqdm(total=total_steps, initial=start_step, desc="train", unit="step",
                             dynamic_ncols=True, disable=not self.is_writer or not on_terminal())
        # in logs (no terminal): about 20 lines per run instead of a bar redraw per step
        self.total, self.start_step = total_steps, start_step
        self.line_every = max(1, total_steps // 20) if self.is_writer and not on_terminal() else 0
        self._first: tuple[int, float] | None = None  # (step, elapsed) of the first step timed here

    def step(self, step: int, metrics: dict[str, Any]) -> None:
        """Records the metrics of optimiser step `step` (1-based: the state's step after the update)."""
        row = {"step": int(step), **{k: float(np.asarray(v)) for k, v in metrics.items()},
               "elapsed": round(time.time() - self.start_time, 3)}
        if self.is_writer:
            with self.path.open("a") as f:
                f.write(json.dumps(row) + "\n")
            for k, v in row.items():
                if k != "step":
                    self._tb.add_scalar(f"train/{k}", v, step)
        self._first = self._first or (int(step), row["elapsed"])
        self.bar.update(1)
        self.bar.set_postfix(loss=f"{row['loss']:.4f}", tok_s=f"{row.get('tokens_per_s', 0.0):.0f}")
        if self.line_every and (step % self.line_every == 0 or step == self.total):
            s0, e0 = self._first
            # after the first step: its compile time would inflate the estimate for the whole run
            per_step = (row["elapsed"] - e0) / (step - s0) if step > s0 else row["elapsed"]
            print(f"train: step {step}/{self.total} loss {row['loss']:.4f} {row.get('tokens_per_s', 0.0):.0f} tok/s, "
                  f"{row['elapsed']:.0f} s, ETA {per_step * (self.total - step):.0f} s", file=sys.stderr, flush=True)

    def scalars(self, prefix: str, step: int, values: dict[str, float]) -> None:
        """Extra scalars (e.g. evaluation metrics) to TensorBoard."""
        if self.is_writer:
            for k, v in values.items():
                if isinstance(v, (int, float)):
                    self._tb.add_scalar(f"{prefix}/{k}", float(v), step)

    def finish(self) -> None:
        """Closes the bar and writers and draws DIR/loss.png from metrics.jsonl."""
        self.bar.close()
        if not self.is_writer:
            return
        self._tb.close()
        rows = _read_jsonl(self.path)
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(6, 3.5))
        ax.plot([r["step"] for r in rows], [r["loss"] for r in rows], lw=1)
        ax.set_xlabel("step")
        ax.set_ylabel("training loss")
        ax.grid(alpha=0.3)
        fig.tight_layout()
        with outputs.atomic_path(self.workdir / "loss.png") as tmp:
            fig.savefig(tmp, dpi=120, format="png")
        plt.close(fig)


def read_losses(workdir: str | pathlib.Path) -> dict[int, float]:
    """{step: loss} from DIR/metrics.jsonl."""
    return {int(r["step"]): float(r["loss"]) for r in _read_jsonl(pathlib.Path(workdir) / "metrics.jsonl")}
