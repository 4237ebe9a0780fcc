"""Widgets generated from a config dataclass's fields and their metadata (help, min, max, choices).

Every widget is keyed and seeded through st.session_state (never `value=`), so a preset can fill
the same keys without Streamlit warning that a value was set twice.
"""

from __future__ import annotations

import dataclasses

import streamlit as st


def label(name: str) -> str:
    return name.replace("_", " ").capitalize()


def widget_value(default, value, choices: bool = True):
    """A config value as its widget holds it (tuples of numbers, and of free text, are edited as text)."""
    if isinstance(default, tuple) and not isinstance(value, str):
        return list(value) if choices and default and isinstance(default[0], str) else ", ".join(map(str, value))
    return value


def field_key(prefix: str, name: str) -> str:
    return f"{prefix}.{name}"


def seed_state(prefix: str, config_cls, values: dict | None = None, overwrite: bool = False) -> None:
    defaults = config_cls()
    for f in dataclasses.fields(config_cls):
        key = field_key(prefix, f.name)
        if overwrite or key not in st.session_state:
            default = getattr(defaults, f.name)
            st.session_state[key] = widget_value(default, (values or {}).get(f.name, default), "choices" in f.metadata)


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
            value = tuple(part.strip() for part in st.text_area(name, help=help_text, key=key).split(",") if part.strip())
        elif isinstance(default, tuple):
            text = st.text_input(name, help=help_text, key=key)
            try:
                value = tuple(int(part) for part in text.replace(" ", "").split(",") if part)
                if not value or min(value) < meta.get("min", 1) or max(value) > meta.get("max", 10**6):
                    raise ValueError
            except ValueError:
                message = (f"{name}: write whole numbers from {meta.get('min', 1)} to {meta.get('max')} "
                           "separated by commas, e.g. 16, 32, 64")
                st.error(message)
                errors.append(message)
                value = default
        elif "choices" in meta:
            value = st.selectbox(name, list(meta["choices"]), help=help_text, key=key)
        elif isinstance(default, int):
            value = int(st.number_input(name, min_value=meta.get("min"), max_value=meta.get("max"), step=1,
                                        help=help_text, key=key))
        else:
            value = float(st.number_input(name, min_value=float(meta["min"]) if "min" in meta else None,
                                          max_value=float(meta["max"]) if "max" in meta else None,
                                          step=0.01, format="%.3f", help=help_text, key=key))
        if value != default:
            chosen[f.name] = list(value) if isinstance(value, tuple) else value
    return chosen, errors
