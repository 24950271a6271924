"""Training metrics: one JSON line per logged step and TensorBoard events, under the run directory."""

from __future__ import annotations

import json
import os
from typing import Any


class MetricsWriter:
    """JSON lines + TensorBoard events under the run directory (rank 0 only)."""

    def __init__(self, run_dir: str | None) -> None:
        self.path = self.tb = None
        self._last_step: int | None = None
        if run_dir:
            os.makedirs(run_dir, exist_ok=True)
            self.path = os.path.join(run_dir, "metrics.jsonl")
            from torch.utils.tensorboard import SummaryWriter

            self.tb = SummaryWriter(os.path.join(run_dir, "tensorboard"))

    def write(self, row: dict[str, Any]) -> None:
        """Append ``row``; a row whose step is not past the last one written (a run resumed from an
        earlier checkpoint logs those steps again) first drops the rows from that step on, so the
        file holds every step once, as trained by the run that continued."""
        if self.path:
            step = int(row.get("step", 0))
            if self._last_step is None:
                self._last_step = self._read_last_step()
            if step <= self._last_step:
                self._rewind(step)
            self._last_step = step
            with open(self.path, "a") as f:
                f.write(json.dumps(row) + "\n")
        if self.tb:
            for k, v in row.items():
                if isinstance(v, (int, float)) and k not in ("step", "epoch"):
                    self.tb.add_scalar(f"{row['task']}/{k}", v, row["step"])
            self.tb.flush()

    def _read_last_step(self) -> int:
        last = -1
        if os.path.exists(self.path):
            with open(self.path) as f:
                for line in f:
                    try:
                        last = max(last, int(json.loads(line).get("step", 0)))
                    except (ValueError, AttributeError):
                        continue
        return last

    def _rewind(self, step: int) -> None:
        if not os.path.exists(self.path):
            return
        with open(self.path) as f:
            lines = f.read().splitlines()
        keep = []
        for line in lines:
            try:
                if int(json.loads(line).get("step", 0)) < step:
                    keep.append(line)
            except (ValueError, AttributeError):  # a line cut by a killed driver
                continue
        if len(keep) != len(lines):
            tmp = self.path + ".tmp"
            with open(tmp, "w") as f:
                f.write("".join(k + "\n" for k in keep))
            os.replace(tmp, self.path)
