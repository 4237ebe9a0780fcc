"""Plotly figures the pages share."""

from __future__ import annotations

import plotly.graph_objects as go
from plotly.subplots import make_subplots


def training_curves(batch_curve: list[dict], epochs: list[dict]) -> go.Figure:
    """Loss and accuracy side by side: per batch (smoothed) from the first step, per epoch (train/test) at
    each epoch's end, so a one-epoch run shows its accuracy while it trains, not one dot at the end."""
    fig = make_subplots(rows=1, cols=2, subplot_titles=("Loss", "Accuracy"))
    if batch_curve:
        fig.add_trace(
            go.Scatter(
                x=[p["step"] for p in batch_curve],
                y=[p["loss"] for p in batch_curve],
                name="batch loss (smoothed)",
                line={"color": "#9aa5b1", "width": 1},
            ),
            1,
            1,
        )
        if "accuracy" in batch_curve[0]:
            fig.add_trace(
                go.Scatter(
                    x=[p["step"] for p in batch_curve],
                    y=[100 * p["accuracy"] for p in batch_curve],
                    name="batch accuracy (smoothed)",
                    line={"color": "#9aa5b1", "width": 1},
                ),
                1,
                2,
            )
    if epochs:
        steps = [e["steps"] for e in epochs]
        for key, color, label in (("train", "#1f77b4", "train"), ("test", "#d62728", "test")):
            fig.add_trace(
                go.Scatter(
                    x=steps,
                    y=[e[f"{key}_loss"] for e in epochs],
                    mode="lines+markers",
                    name=f"{label} loss (epoch)",
                    line={"color": color},
                ),
                1,
                1,
            )
            fig.add_trace(
                go.Scatter(
                    x=steps,
                    y=[100 * e[f"{key}_accuracy"] for e in epochs],
                    mode="lines+markers",
                    name=f"{label} accuracy (epoch)",
                    line={"color": color, "dash": "dot"},
                ),
                1,
                2,
            )
    fig.update_xaxes(title_text="training step", rangemode="tozero")  # a lone epoch point is not an axis 299-301
    fig.update_yaxes(title_text="cross-entropy", row=1, col=1)
    fig.update_yaxes(title_text="%", row=1, col=2)
    fig.update_layout(height=360, margin={"l": 10, "r": 10, "t": 40, "b": 10}, legend={"orientation": "h", "y": -0.25})
    return fig
