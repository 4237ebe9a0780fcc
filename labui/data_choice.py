"""The data set every page works on: one choice per browser session, made in the sidebar, MNIST by default.

The choice is kept under CHOICE_KEY in st.session_state (a plain key, not the widget's own: Streamlit drops a
widget's state when a page without that widget runs, and a plain key survives every page switch). A shared link
may name the data set with ?dataset=fashion-mnist; it sets the choice on the session's first run.
"""

from __future__ import annotations

import streamlit as st

from mnist_core import datasets
from mnist_core.data import DIGITS, DataError
from mnist_core.datasets import DatasetInfo

CHOICE_KEY = "dataset"
WIDGET_KEY = "dataset.picker"
QUERY_PARAM = "dataset"


def _known(key) -> bool:
    try:
        datasets.info(key)
        return True
    except DataError:
        return False


def active_key() -> str:
    """The session's data set key: its choice, else the link's ?dataset=, else MNIST. A chosen set that has gone
    (an imported set deleted since) falls back to MNIST."""
    key = st.session_state.get(CHOICE_KEY)
    if key is None:
        asked = st.query_params.get(QUERY_PARAM)
        key = asked if asked and _known(asked) else datasets.DEFAULT
        st.session_state[CHOICE_KEY] = key
    elif not _known(key):
        key = st.session_state[CHOICE_KEY] = datasets.DEFAULT
    return key


def active_dataset() -> DatasetInfo:
    """What the session's data set is: its title, its class names, its sizes (nothing is loaded)."""
    return datasets.info(active_key())


def set_dataset(key: str) -> None:
    st.session_state[CHOICE_KEY] = key
    _write_query(key)


def _write_query(key: str) -> None:
    """Keep the address in step with the choice, so a copied link opens on the same data set."""
    try:
        if key == datasets.DEFAULT:
            st.query_params.pop(QUERY_PARAM, None)
        else:
            st.query_params[QUERY_PARAM] = key
    except Exception:  # noqa: BLE001  the address is a convenience; a page must not fail for it
        pass


def _picked() -> None:
    set_dataset(st.session_state[WIDGET_KEY])


def dataset_picker() -> DatasetInfo:
    """The sidebar's "Data set" box (call inside `with st.sidebar`); returns the active data set."""
    key = active_key()
    choices = {d.key: d for d in datasets.available()}
    if key not in choices:  # chosen by key but not listed (cannot happen for the built-in two)
        choices[key] = datasets.info(key)
    keys = list(choices)
    st.session_state[WIDGET_KEY] = key  # the box shows the session's choice on every page
    st.selectbox(
        "Data set",
        keys,
        key=WIDGET_KEY,
        format_func=lambda k: choices[k].title,
        on_change=_picked,
        help="Every page works on this data set: its images, its class names, the checkpoints trained on it.",
    )
    chosen = choices[key]
    st.caption(f"{chosen.description}; {chosen.train_size:,} training and {chosen.test_size:,} test images.")
    return chosen


def class_names(info: DatasetInfo | None = None) -> list[str]:
    return list((info or active_dataset()).class_names)


def class_label(info: DatasetInfo, label: int) -> str:
    """A class as people name it: "7" for a digit, "Sneaker" for Fashion-MNIST's class 7."""
    return info.class_name(int(label))


def reads_digits(info: DatasetInfo) -> bool:
    return tuple(info.class_names) == tuple(DIGITS)


def output_names(info: DatasetInfo, outputs: int = 10) -> list[str]:
    """A name for each of a classifier's outputs: every network has ten, a data set of one's own may have fewer
    classes; an output past its classes is named by its number."""
    names = list(info.class_names)
    return names[:outputs] + [str(i) for i in range(len(names), outputs)]


def items(info: DatasetInfo) -> str:
    """What one calls the data set's images in a sentence: "digits" for digits, "images" for anything else."""
    return "digits" if reads_digits(info) else "images"
