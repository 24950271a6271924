"""Resource defaults and the rule that the device follows the resources.

An actor or worker that reserves a GPU runs on CUDA; one that does not runs on the CPU. Ray
hides the GPUs an actor did not reserve (``CUDA_VISIBLE_DEVICES``), so this rule and the
reservation can never disagree.
"""

from __future__ import annotations

# logical CPUs a GPU actor/worker reserves (data feeding, post-processing); CPU ones reserve a
# fraction so that Ray Data's decode tasks still get scheduled on a 2-core machine
CPUS_WITH_GPU = 4.0
CPUS_WITHOUT_GPU = 0.5


def device_for(gpus: float) -> str:
    """``"cuda"`` when ``gpus`` > 0, else ``"cpu"``.

    Args:
        gpus: GPUs the actor or worker reserves.
    """
    return "cuda" if gpus > 0 else "cpu"


def default_cpus(gpus: float) -> float:
    """CPUs an actor or worker reserves by default, given its GPUs."""
    return CPUS_WITH_GPU if gpus > 0 else CPUS_WITHOUT_GPU
