"""What every job's command line shares: ``--set`` over its typed config, and the resolved config on disk.

A job's flags are only what people type every time (paths, task, actors, GPUs); every other
setting is a field of the job's dataclass config, reachable as ``--set dotted.key=value`` with
the type checks of :func:`vloss.config_io.apply_overrides`. Some jobs hold several configs
(training: the recipe and the cluster section): :func:`split_overrides` routes each override by
its first key.
"""

from __future__ import annotations

import argparse
from typing import Any, Callable, Iterable, NoReturn

from pipelines.common.storage import Location, locate, write_json_atomic
from vloss.config_io import to_dict

RESOLVED_CONFIG_NAME = "config.json"


def add_set_argument(parser: argparse.ArgumentParser, example: str,
                     settings: Callable[[], dict[str, Any]] | None = None, note: str = "") -> None:
    """Add the repeatable ``--set KEY=VALUE`` option, and ``--help-settings`` listing every key.

    Args:
        parser: the job's parser.
        example: an override shown in the help text.
        settings: returns ``{key prefix: dataclass config class or instance}`` of what ``--set``
            reaches (called only for ``--help-settings``; it may import what ``--help`` should not).
        note: a line printed under the list (e.g. where presets change the defaults).
    """
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help=f"override any config field, type-checked, e.g. {example} (repeatable); "
                             f"--help-settings lists them")
    if settings is not None:
        parser.add_argument("--help-settings", action=_HelpSettings, nargs=0, settings=settings, note=note,
                            help="list every --set key with its type and default, and exit")


class _HelpSettings(argparse.Action):
    """``--help-settings``: print the keys, types and defaults of :func:`add_set_argument`'s configs."""

    def __init__(self, option_strings: list[str], dest: str, settings: Callable[[], dict[str, Any]], note: str,
                 **kwargs: Any) -> None:
        super().__init__(option_strings, dest, default=argparse.SUPPRESS, **kwargs)
        self.settings, self.note = settings, note

    def __call__(self, parser: argparse.ArgumentParser, namespace: Any, values: Any, option_string: Any = None
                 ) -> None:
        from vloss.config_io import describe_settings

        rows = [r for prefix, cfg in self.settings().items() for r in describe_settings(cfg, prefix)]
        width = max(len(k) for k, _, _ in rows)
        twidth = max(len(t) for _, t, _ in rows)
        lines = [f"--set keys of {parser.prog} (KEY=VALUE; lists as 1,2,3; none for an optional value):"]
        lines += [f"  {k:<{width}}  {t:<{twidth}}  {d}" for k, t, d in rows]
        print("\n".join(lines + ([self.note] if self.note else [])))
        parser.exit(0)


def settings_error(parser: argparse.ArgumentParser, exc: Exception) -> NoReturn:
    """Refuse a bad flag value or ``--set`` override in one line (exit 2), without argparse's usage
    block: the message names the override, and for an unknown key the closest known one."""
    parser.exit(2, f"{parser.prog}: error: {exc}\n")


def add_verbose_argument(parser: argparse.ArgumentParser) -> None:
    """Add ``--verbose``: Ray's progress bars, logs and worker output back on the console."""
    parser.add_argument("--verbose", action="store_true",
                        help="show Ray's own progress bars, logs and worker output (default: written to log files)")


LOG_FOLDER = "_logs"  # in every job's output; "_" marks bookkeeping, never taken for a shard or a stray


def local_log_dir(out: str) -> str | None:
    """``OUT/_logs`` when ``out`` is a local path (or file:// URI), else None (logs stay in Ray's folder)."""
    import pyarrow.fs as pafs

    loc = locate(out)
    return loc.child(LOG_FOLDER).path if isinstance(loc.fs, pafs.LocalFileSystem) else None


def setup_output(out: str, verbose: bool) -> None:
    """Configure where Ray's output goes for a job writing to ``out`` (see :mod:`pipelines.common.ray_env`)."""
    from pipelines.common.ray_env import configure_output

    configure_output(verbose, local_log_dir(out))


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
