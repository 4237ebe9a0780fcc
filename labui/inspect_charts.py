"""Figures for the Inspect page: histograms over training, gradient flow, confusion, calibration."""

from __future__ import annotations

import math

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from mnist_core.evaluation import Calibration
from mnist_core.probes import ProbeRecord


def _centres(edges: np.ndarray) -> np.ndarray:
    return (edges[:-1] + edges[1:]) / 2


def histogram_animation(record: ProbeRecord, layer: int, kind: str) -> go.Figure:
    """One layer's histogram, one frame per snapshot, on axes fixed for the whole run."""
    hists = np.stack(record.weight_hist if kind == "weights" else record.grad_hist)[:, layer]
    edges = (record.weight_edges if kind == "weights" else record.grad_edges)[layer]
    x, top = _centres(edges), float(hists.max()) * 1.05
    bar = lambda t: go.Bar(x=x, y=hists[t], width=edges[1] - edges[0], marker_color="#4c78a8")  # noqa: E731
    frames = [go.Frame(data=[bar(t)], name=str(step)) for t, step in enumerate(record.steps)]
    fig = go.Figure(data=[bar(0)], frames=frames)
    slider_steps = [
        {
            "args": [[str(step)], {"frame": {"duration": 0, "redraw": True}, "mode": "immediate"}],
            "label": str(step),
            "method": "animate",
        }
        for step in record.steps
    ]
    fig.update_layout(
        height=360,
        margin={"t": 40, "b": 10},
        title=f"{record.layers[layer]}: {kind} (share of values per bin)",
        xaxis={"range": [edges[0], edges[-1]], "title": kind[:-1] + " value"},
        yaxis={"range": [0, top]},
        updatemenus=[
            {
                "type": "buttons",
                "showactive": False,
                "x": 0,
                "y": -0.25,
                "xanchor": "left",
                "buttons": [
                    {
                        "label": "▶ play",
                        "method": "animate",
                        "args": [None, {"frame": {"duration": 150, "redraw": True}, "fromcurrent": True}],
                    },
                    {
                        "label": "❚❚ pause",
                        "method": "animate",
                        "args": [[None], {"frame": {"duration": 0}, "mode": "immediate"}],
                    },
                ],
            }
        ],
        sliders=[{"steps": slider_steps, "currentvalue": {"prefix": "step "}, "x": 0.15, "len": 0.85, "y": -0.15}],
    )
    return fig


def histogram_heatmaps(record: ProbeRecord, kind: str, columns: int = 3) -> go.Figure:
    """Every layer's histogram over time as a small heatmap (value x step), so many layers fit one screen."""
    n = len(record.layers)
    rows = math.ceil(n / columns)
    fig = make_subplots(
        rows=rows,
        cols=columns,
        subplot_titles=record.layers,
        vertical_spacing=0.12 / max(rows, 1),
        horizontal_spacing=0.05,
    )
    hists = np.stack(record.weight_hist if kind == "weights" else record.grad_hist)
    edges = record.weight_edges if kind == "weights" else record.grad_edges
    for i in range(n):
        fig.add_trace(
            go.Heatmap(
                z=np.sqrt(hists[:, i].T),
                x=record.steps,
                y=_centres(edges[i]),
                colorscale="Viridis",
                showscale=False,
                hovertemplate="step %{x}<br>value %{y:.3g}<extra></extra>",
            ),
            row=i // columns + 1,
            col=i % columns + 1,
        )
    fig.update_layout(
        height=max(260, 220 * rows),
        margin={"t": 40, "b": 10},
        title=f"All layers: {kind} histogram over training (brighter = more values; sqrt scale)",
    )
    return fig


def flow_bars(record: ProbeRecord, t: int) -> go.Figure:
    mean, top = np.stack(record.grad_mean)[t], np.stack(record.grad_max)[t]
    fig = go.Figure(
        [go.Bar(x=record.layers, y=mean, name="mean |grad|"), go.Bar(x=record.layers, y=top, name="max |grad|")]
    )
    fig.update_layout(
        height=330,
        barmode="group",
        yaxis={"type": "log", "title": "|gradient|"},
        title=f"Gradient flow at step {record.steps[t]} (input side on the left)",
        margin={"t": 40, "b": 10},
    )
    return fig


def flow_lines(
    record: ProbeRecord,
    values: list[np.ndarray],
    names: list[str],
    title: str,
    log: bool = True,
    reference: float | None = None,
) -> go.Figure:
    data = np.stack(values) if values else np.zeros((0, len(names)))
    fig = go.Figure([go.Scatter(x=record.steps, y=data[:, i], name=name, mode="lines") for i, name in enumerate(names)])
    if reference is not None:
        fig.add_hline(y=reference, line_dash="dot", annotation_text=f"{reference:g}")
    fig.update_layout(
        height=300,
        title=title,
        xaxis={"title": "step"},
        margin={"t": 40, "b": 10},
        yaxis={"type": "log" if log else "linear"},
    )
    return fig


def _class_axis(names: list[str], title: str, reverse: bool = False) -> dict:
    """Class numbers as positions (a click answers with them), class names as the tick labels."""
    n = len(names)
    return {
        "title": title,
        "tickvals": list(range(n)),
        "ticktext": names,
        "range": [n - 0.4, -0.6] if reverse else [-0.6, n - 0.4],
        # Slanted when names are words ("Ankle boot"): level, plotly drops the labels that would overlap.
        "tickangle": -45 if max(map(len, names)) > 3 else 0,
        "automargin": True,
    }


def confusion_figure(confusion: np.ndarray, names: list[str] | None = None) -> go.Figure:
    """Squares as scatter points, so a click selects a cell (heatmap cells cannot be selected)."""
    n = len(confusion)
    names = names or [str(i) for i in range(n)]
    true, predicted = np.meshgrid(range(n), range(n), indexing="ij")
    counts = confusion.ravel()
    off = true.ravel() != predicted.ravel()
    colour = np.where(off, np.log1p(counts), np.nan)  # the diagonal would swamp the colour scale
    fig = go.Figure(
        go.Scatter(
            x=predicted.ravel(),
            y=true.ravel(),
            mode="markers+text",
            text=counts,
            customdata=np.stack([np.array(names)[true.ravel()], np.array(names)[predicted.ravel()]], 1),
            marker={
                "symbol": "square",
                "size": 34,
                "color": np.where(off, colour, 0),
                "colorscale": "Reds",
                "line": {"width": np.where(off, 0, 2), "color": "#4c78a8"},
            },
            textfont={"size": 11},
            hovertemplate="true %{customdata[0]}, read as %{customdata[1]}: %{text}<extra></extra>",
        )
    )
    fig.update_layout(
        height=480,
        width=520,
        title="Confusion matrix (click a cell)",
        margin={"t": 40, "b": 10},
        xaxis=_class_axis(names, "predicted"),
        yaxis=_class_axis(names, "true", reverse=True),
        clickmode="event+select",
    )
    return fig


def reliability_figure(cal: Calibration) -> go.Figure:
    centres = _centres(cal.edges)
    fig = go.Figure(
        [
            go.Bar(
                x=centres,
                y=cal.accuracy,
                width=cal.edges[1] - cal.edges[0],
                name="accuracy in bin",
                customdata=cal.counts,
                hovertemplate="confidence %{x:.2f}: accuracy %{y:.1%} (%{customdata} images)<extra></extra>",
            ),
            go.Scatter(x=[0, 1], y=[0, 1], mode="lines", name="perfect calibration", line={"dash": "dot"}),
        ]
    )
    fig.update_layout(
        height=360,
        title=f"Reliability diagram: expected calibration error {cal.ece:.2%}",
        xaxis={"title": "confidence (top probability)", "range": [0, 1]},
        yaxis={"title": "accuracy", "range": [0, 1]},
        margin={"t": 40, "b": 10},
    )
    return fig


def per_class_ticks(accuracy: np.ndarray) -> dict:
    """A y axis for per-class accuracy: a floor a step below the worst class, at most 8 ticks, and enough
    decimals that no two tick labels read the same ("99%, 99%" would)."""
    worst = float(np.nanmin(accuracy)) if len(accuracy) else 0.0
    for step in (0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2):
        floor = max(0.0, math.floor(worst / step - 1e-9) * step - step)
        if (1.0 - floor) / step <= 8:
            break
    return {"range": [floor, 1.0], "tick0": floor, "dtick": step, "tickformat": ".1%" if step < 0.01 else ".0%"}


def per_class_figure(accuracy: np.ndarray, overall: float, names: list[str] | None = None) -> go.Figure:
    names = names or [str(i) for i in range(len(accuracy))]
    fig = go.Figure(go.Bar(x=names, y=accuracy, hovertemplate="class %{x}: %{y:.2%}<extra></extra>"))
    fig.update_layout(
        height=260,
        title=f"Per-class accuracy (overall {overall:.2%})",
        xaxis={"type": "category"},
        yaxis=per_class_ticks(accuracy),
        margin={"t": 40, "b": 10},
    )
    return fig


def reliability_caption(cal: Calibration, name: str) -> str:
    """What the diagram says about this checkpoint: over- or underconfident, from its own numbers."""
    gap = cal.mean_confidence - cal.accuracy_overall
    general = (
        "A calibrated model that says 90% is right 90% of the time: its bars sit on the dotted line. "
        "Expected calibration error is the image-weighted gap between bars and line. "
    )
    said = f"on average it says {cal.mean_confidence:.2%} and is right {cal.accuracy_overall:.2%} of the time"
    if abs(gap) < 0.001:
        return general + f"**{name}** is well calibrated: {said}."
    if gap > 0:
        return general + (
            f"**{name}** is overconfident: {said}; its bars sit below the line (it is right less often than it claims)."
        )
    return general + (
        f"**{name}** is underconfident: {said}; its bars sit above the line (it is right more often "
        "than it claims, as nets trained with label smoothing or strong augmentation often are)."
    )
