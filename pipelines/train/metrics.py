"""Training metrics: one JSON line per logged step and TensorBoard events, under the run directory."""

from __future__ import annotations

import json
import os
from typing import Any


class MetricsWriter:
    """JSON lines + TensorBoard events under the run directory (rank 0 only)."""

    def __init__(self, run_dir: str | None) -> None:
        self.path = self.tb = None
        if run_dir:
            os.makedirs(run_dir, exist_ok=True)
            self.path = os.path.join(run_dir, "metrics.jsonl")
            from torch.utils.tensorboard import SummaryWriter

            self.tb = SummaryWriter(os.path.join(run_dir, "tensorboard"))

    def write(self, row: dict[str, Any]) -> None:
        if self.path:
            with open(self.path, "a") as f:
                f.write(json.dumps(row) + "\n")
        if self.tb:
            for k, v in row.items():
                if isinstance(v, (int, float)) and k not in ("step", "epoch"):
                    self.tb.add_scalar(f"{row['task']}/{k}", v, row["step"])
            self.tb.flush()
