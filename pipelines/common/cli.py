"""What every job's command line shares: ``--set`` over its typed config, and the resolved config on disk.

A job's flags are only what people type every time (paths, task, actors, GPUs); every other
setting is a field of the job's dataclass config, reachable as ``--set dotted.key=value`` with
the type checks of :func:`vloss.config_io.apply_overrides`. Some jobs hold several configs
(training: the recipe and the cluster section): :func:`split_overrides` routes each override by
its first key.
"""

from __future__ import annotations

import argparse
from typing import Any, Iterable

from pipelines.common.storage import Location, locate, write_json_atomic
from vloss.config_io import to_dict

RESOLVED_CONFIG_NAME = "config.json"


def add_set_argument(parser: argparse.ArgumentParser, example: str) -> None:
    """Add the repeatable ``--set KEY=VALUE`` option.

    Args:
        parser: the job's parser.
        example: an override shown in the help text.
    """
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help=f"override any config field, type-checked, e.g. {example} (repeatable)")


def add_verbose_argument(parser: argparse.ArgumentParser) -> None:
    """Add ``--verbose``: Ray's progress bars, logs and worker output back on the console."""
    parser.add_argument("--verbose", action="store_true",
                        help="show Ray's own progress bars, logs and worker output (default: written to log files)")


def local_log_dir(out: str, name: str = "logs") -> str | None:
    """``OUT/name`` when ``out`` is a local path (or file:// URI), else None (logs stay in Ray's folder)."""
    import pyarrow.fs as pafs

    loc = locate(out)
    return loc.child(name).path if isinstance(loc.fs, pafs.LocalFileSystem) else None


def setup_output(out: str, verbose: bool, name: str = "logs") -> None:
    """Configure where Ray's output goes for a job writing to ``out`` (see :mod:`pipelines.common.ray_env`)."""
    from pipelines.common.ray_env import configure_output

    configure_output(verbose, local_log_dir(out, name))


def split_overrides(overrides: Iterable[str], sections: Iterable[str]) -> tuple[dict[str, list[str]], list[str]]:
    """Route ``key=value`` overrides by their first key.

    Args:
        overrides: the ``--set`` values.
        sections: first keys that belong to a separate config (e.g. ``cluster``).

    Returns:
        ``({section: [overrides with the section prefix removed]}, [all other overrides])``.
    """
    names = set(sections)
    routed: dict[str, list[str]] = {s: [] for s in names}
    rest: list[str] = []
    for item in overrides:
        head = item.split("=", 1)[0].strip().split(".", 1)
        if len(head) == 2 and head[0] in names:
            routed[head[0]].append(item.strip().split(".", 1)[1])
        else:
            rest.append(item)
    return routed, rest


def write_resolved_config(out: str | Location, configs: dict[str, Any], name: str = RESOLVED_CONFIG_NAME) -> Location:
    """Write the job's resolved configuration beside its outputs.

    Args:
        out: the job's output directory (path or URI).
        configs: section name -> dataclass config (or JSON-able value).
        name: file name under ``out``.

    Returns:
        where it was written.
    """
    data = {k: (to_dict(v) if hasattr(v, "__dataclass_fields__") else v) for k, v in configs.items()}
    loc = locate(out).child(name)
    write_json_atomic(loc, data)
    return loc
