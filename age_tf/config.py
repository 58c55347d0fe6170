"""Configuration: dataclasses are the one source of truth; absl flags are generated from them.

Each config field carries its help text (and, where it has them, its choices) in its
metadata; `define_flags` turns the fields of a dataclass, nested ones included, into absl
flags with the same names, defaults and help, and `from_flags` builds the dataclass back from
the parsed flags. A flag name belongs to one field: each configuration value has one owner
(the model's input size lives in ModelConfig, not also in the pipeline's), and a second field
of the same name anywhere in a command's config is an error.

Flagfiles (`--flagfile=` / `--config=`) are read by `expand_flagfiles`: a config is named by
path or by the name of a config shipped with the package (`--config=demo`), and a flagfile
that includes another resolves that path relative to itself, not to the current folder.
"""

from __future__ import annotations

import dataclasses
import math
import os
import sys
import types
import typing
from typing import Any

from absl import flags

CONFIGS_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "configs")


def field(default: Any = dataclasses.MISSING, help: str = "", *, choices=None,
          default_factory: Any = dataclasses.MISSING, flag: bool = True,
          low: float | None = None, high: float | None = None, low_open: bool = False,
          high_open: bool = False):
    """A dataclass field with its flag help (and choices, and range) in metadata.

    Args:
      default / default_factory: as in dataclasses.field.
      help: the flag's help text.
      choices: allowed values (an enum flag).
      flag: False keeps the field out of the command line (set by code only).
      low, high: the range of a numeric field (inclusive unless low_open / high_open);
        check_values enforces it, and that a float is finite, for every command.
    """
    meta = {"help": help, "choices": choices, "flag": flag, "low": low, "high": high,
            "low_open": low_open, "high_open": high_open}
    if default_factory is not dataclasses.MISSING:
        return dataclasses.field(default_factory=default_factory, metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


def _is_dataclass_type(tp) -> bool:
    return isinstance(tp, type) and dataclasses.is_dataclass(tp)


def _unwrap_optional(tp):
    """(inner type, optional?) of `X | None` / Optional[X]."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(args) == 1:
            return args[0], True
    return tp, False


@dataclasses.dataclass(frozen=True)
class FlagSpec:
    """One generated flag: its name, type, default, help, choices and the fields it sets."""

    name: str
    kind: str  # bool | integer | float | string | enum | list | int_list | float_list
    default: Any
    help: str
    choices: tuple | None
    paths: tuple[tuple[str, ...], ...]  # attribute path into the config it sets (one)
    group: type | None = None  # the dataclass that declares it (--help groups by it)


def _kind(tp, choices) -> str:
    tp, _ = _unwrap_optional(tp)
    if choices:
        return "enum"
    if tp is bool:
        return "bool"
    if tp is int:
        return "integer"
    if tp is float:
        return "float"
    if tp is str:
        return "string"
    origin = typing.get_origin(tp)
    if origin is tuple:
        (inner, *_) = typing.get_args(tp)
        return {int: "int_list", float: "float_list", str: "list"}[inner]
    raise TypeError(f"no flag type for {tp!r}")


def flag_specs(cls, exclude: tuple[str, ...] = ()) -> list[FlagSpec]:
    """The flags of a config dataclass (nested dataclasses flattened), in field order.

    Args:
      exclude: field names that get no flag (set by the command itself).

    Raises:
      ValueError: two fields share a name (one flag could not say which it sets).
    """
    hints_cache: dict = {}
    specs: dict[str, FlagSpec] = {}

    def walk(c, prefix: tuple[str, ...]):
        hints = hints_cache.setdefault(c, typing.get_type_hints(c))
        for f in dataclasses.fields(c):
            tp = hints[f.name]
            if _is_dataclass_type(tp):
                walk(tp, prefix + (f.name,))
                continue
            if not f.metadata.get("flag", True) or f.name in exclude:
                continue
            default = f.default if f.default is not dataclasses.MISSING else (
                f.default_factory() if f.default_factory is not dataclasses.MISSING else None)
            choices = f.metadata.get("choices")
            spec = FlagSpec(f.name, _kind(tp, choices), default, f.metadata.get("help", ""),
                            tuple(choices) if choices else None, (prefix + (f.name,),), c)
            if f.name in specs:
                raise ValueError(
                    f"--{f.name} would set both {'.'.join(specs[f.name].paths[0])} and "
                    f"{'.'.join(spec.paths[0])} of {cls.__name__}: give each value one field")
            specs[f.name] = spec

    walk(cls, ())
    return list(specs.values())


def define_flags(cls, flag_values=flags.FLAGS, required: tuple[str, ...] = (),
                 exclude: tuple[str, ...] = (), module_name: str | None = None) -> list[FlagSpec]:
    """Defines one absl flag per field of cls (see flag_specs); returns the specs.

    Args:
      required: flags the command cannot run without; they get no default (absl warns
        that a required flag with a default is never missing).
      module_name: the module the flags belong to (default: the calling module).
    """
    specs = flag_specs(cls, exclude)
    if module_name is None:
        caller = sys._getframe(1).f_globals.get("__name__", "")
        module_name = sys.argv[0] if caller == "__main__" else caller
    module = module_name
    for s in specs:
        default = None if s.name in required else s.default
        if s.kind.endswith("list") and default is not None:
            default = [str(v) for v in default]
        if s.kind == "enum":
            flags.DEFINE_enum(s.name, default, list(s.choices), s.help, flag_values=flag_values,
                              module_name=module)
        else:
            define = {"bool": flags.DEFINE_bool, "integer": flags.DEFINE_integer,
                      "float": flags.DEFINE_float, "string": flags.DEFINE_string,
                      "list": flags.DEFINE_list, "int_list": flags.DEFINE_list,
                      "float_list": flags.DEFINE_list}[s.kind]
            define(s.name, default, s.help, flag_values=flag_values, module_name=module)
    if required:
        flags.mark_flags_as_required(list(required), flag_values=flag_values)
    return specs


def _convert(spec: FlagSpec, value):
    if value is None or not spec.kind.endswith("list"):
        return value
    cast = {"list": str, "int_list": int, "float_list": float}[spec.kind]
    try:
        return tuple(cast(v) for v in value)
    except ValueError as e:
        raise ValueError(f"--{spec.name} takes a comma-separated list of {cast.__name__}s, got "
                         f"{','.join(value)!r}") from e


def from_flags(cls, flag_values=flags.FLAGS, exclude: tuple[str, ...] = (), **overrides):
    """The config the parsed flags describe; `overrides` replace top-level fields."""
    values: dict[tuple[str, ...], Any] = {}
    for spec in flag_specs(cls, exclude):
        v = _convert(spec, flag_values[spec.name].value)
        for path in spec.paths:
            values[path] = v

    def build(c, prefix):
        hints = typing.get_type_hints(c)
        kwargs = {}
        for f in dataclasses.fields(c):
            path = prefix + (f.name,)
            if _is_dataclass_type(hints[f.name]):
                kwargs[f.name] = build(hints[f.name], path)
            elif path in values:
                kwargs[f.name] = values[path]
        return c(**kwargs)

    cfg = build(cls, ())
    cfg = dataclasses.replace(cfg, **overrides) if overrides else cfg
    check_values(cfg)  # every command: no NaN, no value outside its field's range
    return cfg


def _range_text(meta) -> str:
    low, high = meta.get("low"), meta.get("high")
    if low is not None and high is not None:
        return (f"in {'(' if meta['low_open'] else '['}{low:g}, {high:g}"
                f"{')' if meta['high_open'] else ']'}")
    if low is not None:
        return f"{'>' if meta['low_open'] else '>='} {low:g}"
    return f"{'<' if meta['high_open'] else '<='} {high:g}"


def _in_range(value, meta) -> bool:
    low, high = meta.get("low"), meta.get("high")
    if low is not None and (value <= low if meta["low_open"] else value < low):
        return False
    return not (high is not None and (value >= high if meta["high_open"] else value > high))


def check_values(cfg) -> None:
    """Every numeric field of cfg (nested configs too) finite and in its declared range.

    Raises:
      ValueError: naming the flag, its value and the range.
    """
    for f in dataclasses.fields(cfg):
        value = getattr(cfg, f.name)
        if dataclasses.is_dataclass(value):
            check_values(value)
            continue
        values = value if isinstance(value, tuple) else (value,)
        for v in values:
            if isinstance(v, bool) or not isinstance(v, (int, float)):
                continue
            if isinstance(v, float) and not math.isfinite(v):
                raise ValueError(f"--{f.name}={value}: must be a finite number")
            if (f.metadata.get("low") is not None or f.metadata.get("high") is not None) \
                    and not _in_range(v, f.metadata):
                shown = ",".join(map(str, values)) if isinstance(value, tuple) else value
                raise ValueError(f"--{f.name}={shown}: must be {_range_text(f.metadata)}")


def resolve_config(name: str) -> str:
    """A config given by path, or by the name of one shipped with the package.

    Raises:
      ValueError: neither exists (lists the shipped names).
    """
    if os.path.isfile(name):
        return os.path.abspath(name)
    candidate = os.path.join(CONFIGS_DIR, name if name.endswith(".cfg") else f"{name}.cfg")
    if os.path.isfile(candidate):
        return candidate
    shipped = sorted(f[:-4] for f in os.listdir(CONFIGS_DIR) if f.endswith(".cfg"))
    raise ValueError(f"--config/--flagfile={name!r}: no such file, and not a shipped config "
                     f"(shipped: {', '.join(shipped)})")


_INCLUDE_KEYS = ("--flagfile", "--config")


def _flag_lines(path: str) -> list[str]:
    """The non-blank, non-comment lines of a flagfile."""
    with open(path) as f:
        return [s for s in (raw.strip() for raw in f) if s and not s.startswith(("#", "//"))]


def _include(line: str) -> str | None:
    """The file a line includes (--flagfile=X / --config=X), or None."""
    key, eq, value = line.partition("=")
    return value if eq and key in _INCLUDE_KEYS else None


def read_flagfile(path: str, seen: tuple[str, ...] = ()) -> list[str]:
    """The flags of a flagfile, includes expanded in place; an include's path is resolved
    relative to the including file (then as a shipped config name)."""
    path = os.path.abspath(path)
    if path in seen:
        raise ValueError(f"flagfile {path} includes itself (via {' -> '.join(seen)})")
    out = []
    for line in _flag_lines(path):
        value = _include(line)
        if value is None:
            out.append(line)
            continue
        near = os.path.join(os.path.dirname(path), value)
        out += read_flagfile(near if os.path.isfile(near) else resolve_config(value), seen + (path,))
    return out


def own_flags(path: str) -> list[str]:
    """The flags a flagfile sets itself, its includes left out (a run config's overrides)."""
    return [line for line in _flag_lines(path) if _include(line) is None]


def expand_flagfiles(argv: list[str]) -> list[str]:
    """argv with every --config=X / --flagfile=X replaced by the flags it holds (in place,
    so later flags still override it). X on the command line is a path (relative to the
    current folder) or a shipped config's name."""
    out = [argv[0]] if argv else []
    for arg in argv[1:]:
        value = _include(arg)
        out += [arg] if value is None else read_flagfile(resolve_config(value))
    return out


def flags_text(specs: list[FlagSpec], flag_values=flags.FLAGS) -> str:
    """The resolved flags of a command, one per line (written next to its outputs)."""
    return "\n".join(flag_values[s.name].serialize() for s in specs) + "\n"


def apply_flag_lines(cfg, lines: list[str], exclude: tuple[str, ...] = ()):
    """cfg with the flags in `lines` (e.g. a run config's) applied, as a new dataclass.

    The lines are parsed by a private FlagValues holding cfg's flags, so types and choices
    are checked as on the command line, and no global flag is touched.

    Raises:
      ValueError: a line names a flag cfg does not have, or a bad value.
    """
    fv = flags.FlagValues()
    specs = define_flags(type(cfg), flag_values=fv, exclude=exclude)
    try:
        fv(["config"] + lines)
    except flags.Error as e:
        raise ValueError(str(e)) from e
    out = cfg
    for spec in specs:
        if not fv[spec.name].present:
            continue
        value = _convert(spec, fv[spec.name].value)
        for path in spec.paths:
            out = _replace_path(out, path, value)
    return out


def _replace_path(obj, path: tuple[str, ...], value):
    if len(path) == 1:
        return dataclasses.replace(obj, **{path[0]: value})
    return dataclasses.replace(obj, **{path[0]: _replace_path(getattr(obj, path[0]), path[1:], value)})


def from_dict(cls, data, where: str = "config"):
    """The dataclass `cls` from a JSON-style dict (what dataclasses.asdict wrote), checked.

    Keys that are not fields are ignored (a record may carry more, e.g. a data fingerprint);
    a missing field takes its default; lists become tuples. Every value must have its
    field's type and range, so a hand-edited or damaged record is named, not trusted.

    Raises:
      ValueError: naming `where` and the field.
    """
    if not isinstance(data, dict):
        raise ValueError(f"{where}: expected an object, got {type(data).__name__}")
    hints = typing.get_type_hints(cls)
    kwargs = {}
    for f in dataclasses.fields(cls):
        if f.name not in data:
            continue
        tp, value = hints[f.name], data[f.name]
        if _is_dataclass_type(tp):
            kwargs[f.name] = from_dict(tp, value, f"{where}: {f.name}")
            continue
        kwargs[f.name] = _typed(tp, value, f"{where}: field {f.name!r}")
    try:
        cfg = cls(**kwargs)
        check_values(cfg)
    except (TypeError, ValueError) as e:
        raise ValueError(f"{where}: {e}") from e
    return cfg


def _typed(tp, value, where: str):
    """value as type tp (int, float, bool, str, tuple[...] or X | None), or ValueError."""
    inner, optional = _unwrap_optional(tp)
    if value is None:
        if optional:
            return None
        raise ValueError(f"{where} is null")
    if typing.get_origin(inner) is tuple:
        if not isinstance(value, (list, tuple)):
            raise ValueError(f"{where}: {value!r} is not a list")
        (item, *_) = typing.get_args(inner)
        return tuple(_typed(item, v, where) for v in value)
    if inner is bool:
        ok = isinstance(value, bool)
    elif inner is int:
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif inner is float:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        value = float(value) if ok else value
    elif inner is str:
        ok = isinstance(value, str)
    else:
        ok = True
    if not ok:
        raise ValueError(f"{where}: {value!r} is not a {getattr(inner, '__name__', inner)}")
    return value
