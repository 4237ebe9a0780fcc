"""Widgets generated from a config dataclass's fields and their metadata (help, min, max, choices).

Every widget is keyed and seeded through st.session_state (never `value=`), so a preset can fill
the same keys without Streamlit warning that a value was set twice.
"""

from __future__ import annotations

import dataclasses

import streamlit as st

from mnist_core.fields import applies, kind_of, range_text, widget_bounds


def label(name: str) -> str:
    return name.replace("_", " ").capitalize()


def widget_value(default, value, choices: bool = True):
    """A config value as its widget holds it (tuples of numbers, and of free text, are edited as text)."""
    if isinstance(default, tuple) and not isinstance(value, str):
        return list(value) if choices and default and isinstance(default[0], str) else ", ".join(map(str, value))
    return value


def field_key(prefix: str, name: str) -> str:
    return f"{prefix}.{name}"


def numeric_optional(f) -> bool:
    """An optional number (None = off) is shown as 0 in its number widget."""
    return f.metadata.get("optional", False) and kind_of(f) in (int, float)


def seed_state(prefix: str, config_cls, values: dict | None = None, overwrite: bool = False, names=None) -> None:
    defaults = config_cls()
    for f in dataclasses.fields(config_cls):
        key = field_key(prefix, f.name)
        if (names is None or f.name in names) and (overwrite or key not in st.session_state):
            default = getattr(defaults, f.name)
            value = (values or {}).get(f.name, default)
            if value is None and numeric_optional(f):
                value = 0
            if kind_of(f) is float and isinstance(value, int) and not isinstance(value, bool):
                value = float(value)  # a float widget refuses an int value
            st.session_state[key] = widget_value(default, value, "choices" in f.metadata)


def widget_label(f) -> str:
    """'Rotation (degrees)', 'Max batches (0 = none)', 'Record every (steps, 0 = auto)': the field's label, unit,
    and what 0 means."""
    meta = f.metadata
    name = meta.get("title", meta.get("label", label(f.name)))
    notes = [meta["unit"]] if meta.get("unit") else []
    if numeric_optional(f):
        notes.append(f"0 = {meta.get('unset', 'none')}")
    return name[:1].upper() + name[1:] + (f" ({', '.join(notes)})" if notes else "")


def field_widgets(
    config_cls,
    prefix: str,
    names,
    columns: int = 1,
    on_change: dict | None = None,
    *,
    options: dict | None = None,
    formats: dict | None = None,
    caps: dict | None = None,
    radio=(),
    hide_inapplicable: bool = True,
) -> dict:
    """One widget per named field, its label, help and range from the field's metadata (mnist_core.fields);
    returns {field: value} with an optional number's 0 read as None, leaving out a field that does not apply to
    the values above it (fields.applies). Range problems are left to the config's
    validate(), which names them: a number input gets no bounds, since Streamlit's bounds only turn a field red
    and keep its previous value, so a visitor who typed 0 epochs trained with the last valid number.

    What only the page knows at run time: options (field -> its choices, e.g. the checkpoints there are),
    formats (field -> how a choice is shown), caps (field -> (highest, why): a host's tighter bound, never
    above the field's own, its reason added to the help), radio (fields shown as a horizontal radio) and
    hide_inapplicable=False where a setting matters beyond the values shown (Compare's arms vary the optimizer)."""
    seed_state(prefix, config_cls, names=names)
    by_name = {f.name: f for f in dataclasses.fields(config_cls)}
    cols = st.columns(columns) if columns > 1 else None
    values = {}
    drawn = 0
    for name in names:
        f = by_name[name]
        if hide_inapplicable and not applies(f, values):  # e.g. momentum under Adam: the config keeps its default
            hidden = field_key(prefix, name)
            if hidden in st.session_state:  # Streamlit forgets an undrawn widget's value; back to SGD keeps it
                st.session_state[hidden] = st.session_state[hidden]
            continue
        where = cols[drawn % columns] if cols else st
        drawn += 1
        meta, key, kind = f.metadata, field_key(prefix, name), kind_of(f)
        help_text = meta.get("help") or None
        if kind in (int, float) and not meta.get("choices") and widget_bounds(f) != (None, None):
            allowed = f"0 (none) or {range_text(f)}" if numeric_optional(f) else range_text(f)
            help_text = f"{help_text or ''} Allowed: {allowed}.".strip()
        cap, why = (caps or {}).get(name, (None, ""))
        if cap is not None:
            help_text = f"{help_text or ''} {why}".strip()
            default = getattr(config_cls(), name)
            if st.session_state[key] == default and default is not None and default > cap:
                st.session_state[key] = cap  # the default lies above the cap: lowered, as the visitor typed nothing
        common = dict(help=help_text, key=key, on_change=(on_change or {}).get(name))
        choices = list((options or {}).get(name, meta.get("choices", ())))
        shown = {"format_func": formats[name]} if formats and name in formats else {}
        if kind is bool:
            value = where.checkbox(widget_label(f), **common)
        elif choices and name in radio:
            value = where.radio(widget_label(f), choices, horizontal=True, **shown, **common)
        elif choices:
            value = where.selectbox(widget_label(f), choices, **shown, **common)
        elif kind is int:
            value = int(where.number_input(widget_label(f), step=meta.get("step", 1), **common))
        elif kind is float:
            value = float(where.number_input(widget_label(f), step=meta.get("step"), format="%g", **common))
        else:
            value = where.text_input(widget_label(f), **common) or None
        if cap is not None and value is not None and value > cap:
            where.error(f"{widget_label(f)}: {value:,} is more than this page takes. {why}")
            st.stop()  # the config's own check knows only the field's range, not this page's cap
        values[name] = None if numeric_optional(f) and value == 0 else value
    return values


def config_widgets(config_cls, prefix: str) -> tuple[dict, list[str]]:
    """Draw one widget per field; returns (overrides that differ from the defaults, error messages)."""
    seed_state(prefix, config_cls)
    defaults = config_cls()
    chosen, errors = {}, []
    for f in dataclasses.fields(config_cls):
        meta, key, default = f.metadata, field_key(prefix, f.name), getattr(defaults, f.name)
        help_text, name = meta.get("help"), meta.get("label", label(f.name))
        if isinstance(default, bool):
            value = st.checkbox(name, help=help_text, key=key)
        elif isinstance(default, tuple) and "choices" in meta:
            value = tuple(st.multiselect(name, meta["choices"], help=help_text, key=key))
            if not value:
                st.error(f"{name}: choose at least one")
                errors.append(f"{name}: choose at least one")
        elif isinstance(default, tuple) and default and isinstance(default[0], str):  # free text, e.g. a layer list
            value = tuple(
                part.strip() for part in st.text_area(name, help=help_text, key=key).split(",") if part.strip()
            )
        elif isinstance(default, tuple):
            text = st.text_input(name, help=help_text, key=key)
            try:
                value = tuple(int(part) for part in text.split(","))  # int() refuses "" ("16,,32") and "2 4"
                if not value or min(value) < meta.get("min", 1) or max(value) > meta.get("max", 10**6):
                    raise ValueError
            except ValueError:
                message = (
                    f"{name}: write whole numbers from {meta.get('min', 1)} to {meta.get('max')} "
                    "separated by commas, e.g. 16, 32, 64"
                )
                st.error(message)
                errors.append(message)
                value = default
        elif "choices" in meta:
            value = st.selectbox(name, list(meta["choices"]), help=help_text, key=key)
        elif isinstance(default, int):  # unbounded, as in field_widgets: the model's own check names a bad value
            value = int(st.number_input(name, step=1, help=help_text, key=key))
        else:
            value = float(st.number_input(name, step=0.01, format="%.3f", help=help_text, key=key))
        if value != default:
            chosen[f.name] = list(value) if isinstance(value, tuple) else value
    return chosen, errors
