"""Figures for the Transfer page: one colour per arm."""

from __future__ import annotations

import plotly.colors
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from mnist_core.transfer import ArmResult

PALETTE = plotly.colors.qualitative.D3


def transfer_curves(results: list[ArmResult]) -> go.Figure:
    """Smoothed training loss and test accuracy (on a fixed class-balanced set of test digits) by step."""
    fig = make_subplots(rows=1, cols=2, subplot_titles=("Training loss (smoothed)", "Test accuracy % (2,000 digits)"))
    for i, result in enumerate(results):
        steps = [p["step"] for p in result.curve]
        color = PALETTE[i % len(PALETTE)]
        fig.add_trace(
            go.Scatter(
                x=steps,
                y=[p["train_loss"] for p in result.curve],
                mode="lines+markers",
                name=result.label,
                legendgroup=result.arm,
                line={"color": color},
            ),
            1,
            1,
        )
        fig.add_trace(
            go.Scatter(
                x=steps,
                y=[100 * p["test_accuracy"] for p in result.curve],
                mode="lines+markers",
                name=result.label,
                legendgroup=result.arm,
                showlegend=False,
                line={"color": color},
            ),
            1,
            2,
        )
    fig.update_xaxes(title_text="training step")
    fig.update_layout(height=380, margin={"l": 10, "r": 10, "t": 40, "b": 10}, legend={"orientation": "h", "y": -0.25})
    return fig
