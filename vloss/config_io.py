"""The configuration engine: typed ``--set key=value`` overrides and JSON round trips.

Works on any nesting of dataclasses (the recipe configs of :mod:`vloss.config`, and the job
configs of every pipeline stage): :func:`apply_overrides` edits a config from
``"section.field=value"`` strings and checks each value against the field's annotated type;
:func:`to_dict` / :func:`from_dict` turn a config into JSON-serialisable data (saved in every
checkpoint, weights file and report) and back. Supported field types: ``bool``, ``int``,
``float``, ``str``, ``Optional[...]``, fixed-length and variadic ``tuple[...]``, and nested
dataclasses.
"""

from __future__ import annotations

import dataclasses
import json
import types
import typing
from typing import Any, Union


def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _is_optional(tp: Any) -> tuple[bool, Any]:
    origin = typing.get_origin(tp)
    if origin in (Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(args) == 1 and len(typing.get_args(tp)) == 2:
            return True, args[0]
    return False, tp


def _convert(value: Any, tp: Any, where: str) -> Any:
    """Convert already-parsed ``value`` (JSON-like) to type ``tp``; raise ValueError if it does not fit."""
    optional, inner = _is_optional(tp)
    if value is None:
        if optional:
            return None
        raise ValueError(f"{where}: None is not allowed (type {tp})")
    tp = inner
    if dataclasses.is_dataclass(tp):
        if isinstance(value, tp):
            return value
        if not isinstance(value, dict):
            raise ValueError(f"{where}: expected a mapping for {tp.__name__}, got {type(value).__name__}")
        return _from_dict(tp, value, where)
    origin = typing.get_origin(tp)
    if origin is tuple:
        args = typing.get_args(tp)
        if not isinstance(value, (list, tuple)):
            raise ValueError(f"{where}: expected a sequence, got {value!r}")
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_convert(v, args[0], f"{where}[{i}]") for i, v in enumerate(value))
        if len(args) != len(value):
            raise ValueError(f"{where}: expected {len(args)} items, got {len(value)}")
        return tuple(_convert(v, a, f"{where}[{i}]") for i, (v, a) in enumerate(zip(value, args)))
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise ValueError(f"{where}: expected a bool, got {value!r}")
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f"{where}: expected an int, got {value!r}")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ValueError(f"{where}: expected a float, got {value!r}")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise ValueError(f"{where}: expected a string, got {value!r}")
        return value
    raise ValueError(f"{where}: unsupported field type {tp}")


def _parse_text(text: str, tp: Any, where: str) -> Any:
    """Parse the right-hand side of ``key=value`` for a field of type ``tp``."""
    optional, inner = _is_optional(tp)
    stripped = text.strip()
    if optional and stripped.lower() in ("none", "null"):
        return None
    if inner is str:
        return stripped
    if inner is bool:
        low = stripped.lower()
        if low in ("true", "1", "yes", "on"):
            return True
        if low in ("false", "0", "no", "off"):
            return False
        raise ValueError(f"{where}: expected a bool (true/false), got {text!r}")
    if typing.get_origin(inner) is tuple:
        args = typing.get_args(inner)
        body = stripped.strip("()[]")
        items = [s.strip() for s in body.split(",") if s.strip()] if body else []
        if len(args) == 2 and args[1] is Ellipsis:
            types_ = [args[0]] * len(items)
        elif len(args) != len(items):
            raise ValueError(f"{where}: expected {len(args)} comma-separated items, got {len(items)}")
        else:
            types_ = list(args)
        return tuple(_parse_text(s, t, f"{where}[{i}]") for i, (s, t) in enumerate(zip(items, types_)))
    try:
        parsed = json.loads(stripped)
    except json.JSONDecodeError as exc:
        raise ValueError(f"{where}: cannot parse {text!r} as {inner}") from exc
    if inner is float and isinstance(parsed, int) and not isinstance(parsed, bool):
        parsed = float(parsed)
    return _convert(parsed, tp, where)


def to_dict(cfg: Any) -> dict[str, Any]:
    """Nested dataclass -> JSON-serialisable dict (tuples become lists)."""
    data = dataclasses.asdict(cfg)
    return json.loads(json.dumps(data))


def _from_dict(cls: type, data: dict[str, Any], where: str) -> Any:
    hints = _hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise ValueError(f"{where or cls.__name__}: unknown key(s) {unknown}; known: {sorted(names)}")
    kwargs = {k: _convert(v, hints[k], f"{where}.{k}" if where else k) for k, v in data.items()}
    return cls(**kwargs)


def from_dict(data: dict[str, Any], cls: type) -> Any:
    """Rebuild a config of type ``cls`` from :func:`to_dict` output (missing keys keep defaults).

    Args:
        data: nested mapping as written by :func:`to_dict`.
        cls: the dataclass to build.

    Raises:
        ValueError: unknown keys or values of the wrong type, naming the dotted path.
    """
    return _from_dict(cls, data, "")


def setting_keys(cfg: Any, prefix: str = "") -> list[str]:
    """Every settable dotted key of a (nested) dataclass config or class, sections expanded."""
    return [key for key, _, _ in describe_settings(cfg, prefix)]


def describe_settings(cfg: Any, prefix: str = "") -> list[tuple[str, str, str]]:
    """``(key, type, default)`` for every settable key of a dataclass config (class or instance):
    an instance shows its values, a class its defaults (``required`` where it has none)."""
    rows = []
    cls = cfg if isinstance(cfg, type) else type(cfg)
    hints = _hints(cls)
    for f in dataclasses.fields(cls):
        tp = _is_optional(hints[f.name])[1]
        if not isinstance(cfg, type):
            value = getattr(cfg, f.name)
        elif f.default is not dataclasses.MISSING:
            value = f.default
        elif f.default_factory is not dataclasses.MISSING:
            value = f.default_factory()
        else:
            value = dataclasses.MISSING
        if dataclasses.is_dataclass(tp):
            rows += describe_settings(value if value is not dataclasses.MISSING else tp, f"{prefix}{f.name}.")
            continue
        optional, inner = _is_optional(hints[f.name])
        name = inner.__name__ if isinstance(inner, type) else str(inner).replace("typing.", "")
        shown = "required" if value is dataclasses.MISSING else repr(value)
        rows.append((prefix + f.name, name + (" | None" if optional else ""), shown))
    return rows


def _did_you_mean(cfg: Any, typed: str, prefix: str) -> str:
    """`` (did you mean 'x'?)`` for the settable key closest to ``typed``: the same last name in
    another section first (``train.base_lr`` -> ``optim.base_lr``), else the closest spelling."""
    import difflib

    keys = [prefix + k for k in setting_keys(cfg)]
    typed = prefix + typed
    last = typed.rsplit(".", 1)[-1]
    same = [k for k in keys if k.rsplit(".", 1)[-1] == last]
    match = same[:1] or difflib.get_close_matches(typed, keys, n=1, cutoff=0.6)
    return f" (did you mean {match[0]!r}?)" if match else ""


def apply_overrides(cfg: Any, overrides: list[str], default_section: str | None = "model", prefix: str = "") -> Any:
    """Apply ``"a.b.c=value"`` overrides in place and return ``cfg``.

    Keys are dotted field paths from ``cfg``. When ``cfg`` has a ``default_section`` field
    (``model`` on the recipe configs), a path that does not start with a top-level field is
    looked up there, so ``decoder.num_layers=6`` and ``model.decoder.num_layers=6`` are the
    same override.

    Args:
        cfg: a (nested) dataclass config.
        default_section: the field a path without a known top-level key is looked up in.
        overrides: strings ``key=value``; values are parsed per the field's type
            (ints, floats, ``true/false``, ``none`` for optional fields, ``1,2,3`` for tuples).
        prefix: the section the user wrote in front of these keys when the caller routed them
            here without it (``"cluster."``), so that messages show the override as typed.

    Raises:
        ValueError: naming the override for unknown keys or values of the wrong type.
    """
    for raw in overrides:
        item = prefix + raw
        if "=" not in raw:
            raise ValueError(f"override {item!r} is not of the form key=value")
        key, text = raw.split("=", 1)
        path = key.strip().split(".")
        top = {f.name for f in dataclasses.fields(cfg)}
        if path[0] not in top and default_section in top:
            path = [default_section, *path]
        target = cfg
        for i, name in enumerate(path[:-1]):
            fields_ = {f.name for f in dataclasses.fields(target)}
            if name not in fields_:
                raise ValueError(f"override {item!r}: unknown key {prefix + '.'.join(path[: i + 1])!r}; "
                                 f"known here: {sorted(fields_)}{_did_you_mean(cfg, key.strip(), prefix)}")
            target = getattr(target, name)
            if not dataclasses.is_dataclass(target):
                raise ValueError(f"override {item!r}: {prefix + '.'.join(path[: i + 1])!r} is not a section")
        last = path[-1]
        fields_ = {f.name for f in dataclasses.fields(target)}
        if last not in fields_:
            raise ValueError(f"override {item!r}: unknown key {prefix + '.'.join(path)!r}; "
                             f"known here: {sorted(fields_)}{_did_you_mean(cfg, key.strip(), prefix)}")
        tp = _hints(type(target))[last]
        if dataclasses.is_dataclass(_is_optional(tp)[1]):
            raise ValueError(f"override {item!r}: {prefix + '.'.join(path)!r} is a section; set its fields")
        value = _parse_text(text, tp, f"override {item!r}")
        try:
            dataclasses.replace(target, **{last: value})  # runs __post_init__ checks first
        except ValueError as exc:
            raise ValueError(f"override {item!r}: {exc}") from exc
        setattr(target, last, value)
    return cfg
