"""A setting described once, next to its dataclass field: help text, unit, range and choices.

The Streamlit widgets (labui/widgets.py), the command-line flags (add_flags) and the range and type
checks (check) are all generated from this metadata, so a page, the CLI and the core cannot disagree
on what a setting takes. Bounds: min/max are inclusive, above/below exclusive (a learning rate is
above 0, momentum below 1). optional=True: None means "off" (or what unset names), shown as 0 in a number
widget. label names the setting in messages ("batch size"); title, where given, heads its widget instead.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
from dataclasses import field


def setting(
    default=None,
    help: str = "",
    *,
    unit: str = "",
    label: str | None = None,
    title: str | None = None,
    min=None,
    max=None,
    above=None,
    below=None,
    choices=None,
    optional: bool = False,
    unset: str = "none",
    step=None,
    ui: bool = True,
    cli: bool = True,
    applies: dict | None = None,
    default_factory=None,
):
    """applies: {other setting: its values for which this one means something}, e.g. momentum only for sgd and
    rmsprop; a form hides the setting otherwise (the config keeps its default). unset: what an optional setting
    left empty does, in a word for a form's label ("Max batches (0 = none)", "Record every (steps, 0 = auto)")."""
    meta = {"help": help, "unit": unit, "optional": optional, "unset": unset, "ui": ui, "cli": cli}
    for key, value in (
        ("label", label),
        ("title", title),
        ("min", min),
        ("max", max),
        ("above", above),
        ("below", below),
        ("choices", tuple(choices) if choices is not None else None),
        ("step", step),
        ("applies", {k: tuple(v) for k, v in applies.items()} if applies is not None else None),
    ):
        if value is not None:
            meta[key] = value
    if default_factory is not None:
        return field(default_factory=default_factory, metadata=meta)
    return field(default=default, metadata=meta)


def name_of(f) -> str:
    """The setting's name in messages: 'batch size', 'learning rate'."""
    return f.metadata.get("label", f.name.replace("_", " "))


def _annotation(f) -> str:
    return f.type if isinstance(f.type, str) else getattr(f.type, "__name__", "")


def kind_of(f) -> type | None:
    """int, float, bool or str from the annotation ("float | None" is a float; "tuple[int, ...]" is an int,
    each value of the list); None for others (dicts)."""
    text = _annotation(f)
    if is_list(f):
        text = text[len("tuple[") :]
    return {"int": int, "float": float, "bool": bool, "str": str}.get(text.split(" ")[0].split("|")[0].rstrip(","))


def is_list(f) -> bool:
    """A field holding several values of one kind, e.g. a CNN's channels per block."""
    return _annotation(f).startswith("tuple[")


def number(value) -> str:
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{value:,}"
    return f"{value:g}"


def widget_bounds(f) -> tuple:
    """(lowest, highest) a widget offers: the bounds, exclusive ones included (check names what is wrong)."""
    meta = f.metadata
    low = meta.get("min", meta.get("above"))
    high = meta.get("max", meta.get("below"))
    return low, high


def range_text(f) -> str:
    """The range in words, e.g. 'between 1 and 200', 'in (0, 1]', 'a positive number', 'at least 1'."""
    meta, unit = f.metadata, (" " + f.metadata["unit"] if f.metadata.get("unit") else "")
    low_in, low_out, high_in, high_out = (meta.get(k) for k in ("min", "above", "max", "below"))
    low, high = (low_in if low_in is not None else low_out), (high_in if high_in is not None else high_out)
    if low is not None and high is not None:
        if low_out is None and high_out is None:
            return f"between {number(low)} and {number(high)}{unit}"
        return f"in {'(' if low_out is not None else '['}{number(low)}, {number(high)}{')' if high_out is not None else ']'}{unit}"
    if low_out is not None:
        return "a positive number" + unit if low_out == 0 else f"greater than {number(low_out)}{unit}"
    if low_in is not None:
        return f"at least {number(low_in)}{unit}"
    if high is not None:
        return f"at most {number(high)}{unit}" if high_out is None else f"below {number(high)}{unit}"
    return ""


def problem(f, value) -> str | None:
    """What is wrong with this value of the field, in one sentence; None when it is fine."""
    meta, name = f.metadata, name_of(f)
    if value is None:
        return None if meta.get("optional") or f.default is None else f"{name} must be set"
    if is_list(f):
        if not isinstance(value, tuple):
            return f"{name} must be a list (got {value!r})"
        if not value:
            return (
                f"{name} must not be empty"
                if "choices" not in meta
                else f"choose at least one of {', '.join(map(str, meta['choices']))}"
            )
        for v in value:  # each value against the field's kind, choices and range
            if message := _value_problem(f, v):
                return message
        return None
    if isinstance(value, tuple) and "choices" in meta:  # a set of choices, e.g. the arms of a comparison
        if not value:
            return f"choose at least one of {', '.join(map(str, meta['choices']))}"
        unknown = [v for v in value if v not in meta["choices"]]
        return f"unknown {name} {unknown[0]!r}; choose from {', '.join(map(str, meta['choices']))}" if unknown else None
    return _value_problem(f, value)


def _value_problem(f, value) -> str | None:
    meta, name, kind = f.metadata, name_of(f), kind_of(f)
    if kind is bool and not isinstance(value, bool):
        return f"{name} must be true or false (got {value!r})"
    if kind is int and (isinstance(value, bool) or not isinstance(value, int)):
        return f"{name} must be a whole number (got {value!r})"
    if kind is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return f"{name} must be a number (got {value!r})"
        if not math.isfinite(value):
            return f"{name} must be {range_text(f) or 'a finite number'} (got {value})"
    if kind is str and not isinstance(value, str):
        return f"{name} must be text (got {value!r})"
    if "choices" in meta and value not in meta["choices"]:
        return f"unknown {name} {value!r}; choose one of {', '.join(map(str, meta['choices']))}"
    if kind in (int, float):
        low_in, low_out, high_in, high_out = (meta.get(k) for k in ("min", "above", "max", "below"))
        if (
            (low_in is not None and value < low_in)
            or (low_out is not None and value <= low_out)
            or (high_in is not None and value > high_in)
            or (high_out is not None and value >= high_out)
        ):
            return f"{name} must be {range_text(f)} (got {number(value)})"
    return None


def check(config, error=ValueError) -> None:
    """Each field's type, choices and range, from its metadata; raises `error` with the first problem."""
    for f in dataclasses.fields(config):
        if f.metadata and (message := problem(f, getattr(config, f.name))):
            raise error(message)


def check_overrides(cls, overrides: dict, what: str, error=ValueError) -> None:
    """Refuse a key that is no field of cls (nanoGPT's configurator does the same): a typo must not be ignored."""
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(overrides) - known)
    if unknown:
        raise error(
            f"{what}: unknown setting {', '.join(map(repr, unknown))}; the settings are: {', '.join(sorted(known))}"
        )


def flag_help(f) -> str:
    meta = f.metadata
    parts = [meta.get("help", "").rstrip(".")]
    if (text := range_text(f)) and "choices" not in meta:
        parts.append(text)
    if meta.get("optional"):
        parts.append("unset: none")
    return "; ".join(p for p in parts if p)


def add_flags(parser, cls, names=None) -> list[str]:
    """One --flag per field (the ones named, else every field with cli=True); every default None = not given."""
    added = []
    for f in dataclasses.fields(cls):
        if (names is not None and f.name not in names) or (names is None and not f.metadata.get("cli", False)):
            continue
        kind = kind_of(f)
        if kind is None or is_list(f):  # a list's flag (comma-separated values) is its command's own
            continue
        flag = "--" + f.name.replace("_", "-")
        if kind is bool:
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, default=None, help=flag_help(f))
        else:
            parser.add_argument(flag, type=kind, default=None, choices=f.metadata.get("choices"), help=flag_help(f))
        added.append(f.name)
    return added


def flag_values(args, names) -> dict:
    """The flags the user gave (those not None), by field name."""
    return {n: getattr(args, n) for n in names if getattr(args, n, None) is not None}


def applies(f, values: dict) -> bool:
    """Whether the setting means something with these values of the settings it depends on (see setting());
    a setting it depends on that is not among the values hides nothing."""
    return all(values[other] in allowed for other, allowed in f.metadata.get("applies", {}).items() if other in values)
