"""Feature maps, Grad-CAM and integrated gradients on shipped checkpoints and real digits."""

import pytest
import torch

from mnist_core.checkpoints import load
from mnist_core.saliency import BACKGROUND, explain, feature_maps, grad_cam, integrated_gradients


@pytest.fixture(scope="module")
def digit(data):
    return data.test.images[:1]


def test_grad_cam_is_a_non_negative_map_over_the_input(digit):
    model, _ = load("best")
    cam = grad_cam(model, digit, int(model(digit).argmax()))
    assert cam.shape == (28, 28)
    assert cam.min() >= 0 and cam.max() == pytest.approx(1.0)


def test_integrated_gradients_add_up_to_the_logit_change(digit):
    model, _ = load("mlp")
    target = int(model(digit).argmax())
    attribution = integrated_gradients(model, digit, target, steps=256)
    with torch.no_grad():
        change = model(digit)[0, target] - model(torch.full_like(digit, BACKGROUND))[0, target]
    assert attribution.sum() == pytest.approx(float(change), rel=0.05)  # the completeness axiom


def test_feature_maps_come_from_every_conv_layer_and_none_from_an_mlp(digit):
    maps = feature_maps(load("tiny_gap")[0], digit)
    assert len(maps) == 7
    assert maps[0].maps.shape == (8, 26, 26) and "ReLU" in maps[0].name
    assert feature_maps(load("mlp")[0], digit) == []
    method, heat = explain(load("mlp")[0], digit, 7)
    assert "integrated gradients" in method and heat.shape == (28, 28) and heat.min() >= 0
