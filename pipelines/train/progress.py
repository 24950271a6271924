"""The driver's training progress: rank 0's metric rows drawn as one line and written to
``metrics.jsonl`` / TensorBoard."""

from __future__ import annotations

import threading
from typing import Any

from pipelines.train.metrics import MetricsWriter
from pipelines.train.trainer import metrics_line
from vloss.progress import ProgressLine


class TrainingProgress:
    """Driver thread: draws the training progress line from rank 0's rows and prints each metrics line.

    Args:
        sink: the progress actor the rank-0 worker puts its logged rows into.
        total_steps: the step this launch ends at (the bar's length: the schedule's, or ``train.max_steps``).
        poll_s: seconds between polls.
        run_dir: where the driver writes every row to ``metrics.jsonl`` and TensorBoard (the
            rank-0 worker may run on another machine than the run directory's).
        label: the stage's name on the line (``train``, ``pretrain``).
    """

    def __init__(self, sink: Any, total_steps: int, poll_s: float = 1.0, run_dir: str | None = None,
                 label: str = "train") -> None:
        self.sink, self.total, self.poll_s, self.label = sink, total_steps, poll_s, label
        self.writer = MetricsWriter(run_dir)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="vloss-train-progress", daemon=True)
        self.line: ProgressLine | None = None

    def __enter__(self) -> TrainingProgress:
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        self._thread.join(timeout=30)
        if self.line is not None:
            self.line.close()

    def _drain(self) -> None:
        import ray

        for row in ray.get(self.sink.drain.remote()):
            self.writer.write({k: v for k, v in row.items() if k != "total_steps"})
            if self.line is None:
                self.line = ProgressLine(self.label, self.total, unit="step")
            postfix = " ".join(f"{k.split('/')[0]} {v:.3g}" for k, v in row.items()
                               if isinstance(v, float) and k.endswith("/total"))
            self.line.set(row["step"], postfix)
            self.line.message(metrics_line(row, self.total, self.label))

    def _run(self) -> None:
        while not self._stop.wait(self.poll_s):
            try:
                self._drain()
            except Exception:  # the run is ending or Ray is shutting down: the result says how it went
                break
        try:
            self._drain()
        except Exception:
            pass
