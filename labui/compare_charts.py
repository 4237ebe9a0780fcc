"""Figures for comparisons: one colour per arm, seeds of an arm drawn alike."""

from __future__ import annotations

import plotly.colors
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from mnist_core.compare import RunState, epoch_curves

PALETTE = plotly.colors.qualitative.D3


def arm_colors(runs: list[RunState]) -> dict[str, str]:
    return {arm: PALETTE[i % len(PALETTE)] for i, arm in enumerate(dict.fromkeys(r.spec.arm for r in runs))}


def live_loss_curves(runs: list[RunState]) -> go.Figure:
    """Every run's smoothed per-batch training loss, as it trains."""
    colors = arm_colors(runs)
    fig = go.Figure()
    shown: set[str] = set()
    for run in runs:
        curve = run.job.snapshot().batch_curve
        if not curve:
            continue
        arm = run.spec.arm
        fig.add_trace(
            go.Scatter(
                x=[p["step"] for p in curve],
                y=[p["loss"] for p in curve],
                mode="lines",
                name=arm,
                legendgroup=arm,
                showlegend=arm not in shown,
                line={"color": colors[arm], "width": 1.5},
                hovertemplate=f"{arm}, seed {run.spec.seed}<br>step %{{x}}: %{{y:.3f}}<extra></extra>",
            )
        )
        shown.add(arm)
    fig.update_layout(
        title="Training loss per batch (smoothed), every run",
        height=340,
        xaxis_title="training step",
        yaxis_title="cross-entropy",
        margin={"l": 10, "r": 10, "t": 40, "b": 10},
    )
    return fig


def arm_curves(runs: list[RunState]) -> go.Figure:
    """Per-epoch train and test loss and accuracy, mean over seeds with a band of one standard deviation."""
    colors = arm_colors(runs)
    panels = [
        ("train_loss", "Train loss", 1, 1),
        ("test_loss", "Test loss", 1, 2),
        ("train_accuracy", "Train accuracy %", 2, 1),
        ("test_accuracy", "Test accuracy %", 2, 2),
    ]
    fig = make_subplots(rows=2, cols=2, subplot_titles=[p[1] for p in panels], vertical_spacing=0.14)
    for metric, _, row, col in panels:
        scale = 100 if "accuracy" in metric else 1
        for arm, points in epoch_curves(runs, metric).items():
            if not points:
                continue
            epochs = [p[0] for p in points]
            mean = [scale * p[1] for p in points]
            std = [scale * p[2] for p in points]
            fig.add_trace(
                go.Scatter(
                    x=epochs + epochs[::-1],
                    y=[m + s for m, s in zip(mean, std)] + [m - s for m, s in zip(mean[::-1], std[::-1])],
                    fill="toself",
                    fillcolor=colors[arm],
                    opacity=0.15,
                    line={"width": 0},
                    hoverinfo="skip",
                    legendgroup=arm,
                    showlegend=False,
                ),
                row,
                col,
            )
            fig.add_trace(
                go.Scatter(
                    x=epochs,
                    y=mean,
                    mode="lines+markers",
                    name=arm,
                    legendgroup=arm,
                    showlegend=metric == "train_loss",
                    line={"color": colors[arm]},
                ),
                row,
                col,
            )
    fig.update_xaxes(dtick=1)
    fig.update_xaxes(title_text="epoch", row=2)
    fig.update_layout(
        height=600,
        margin={"l": 10, "r": 10, "t": 80, "b": 10},
        legend={"orientation": "h", "y": -0.12},
        title="Per epoch: mean over seeds, band = 1 std",
    )
    return fig
