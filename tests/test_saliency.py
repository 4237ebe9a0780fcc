"""Feature maps, Grad-CAM and integrated gradients on shipped checkpoints and real digits."""

import pytest
import torch

from mnist_core.checkpoints import load
from mnist_core.saliency import BACKGROUND, dense_activations, explain, feature_maps, grad_cam, integrated_gradients


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


def test_layers_are_named_in_words_a_learner_can_follow(digit):
    from mnist_core.models import build_model, layer_labels

    labels = layer_labels(load("fast")[0])  # conv, max-pool, BatchNorm, ReLU x3, flatten, linear
    assert labels["0"] == "conv 1 (layer 1)" and labels["1"] == "max-pool after conv 1 (layer 2)"
    assert labels["7"] == "ReLU after conv 2 (layer 8)" and labels[max(labels, key=int)].startswith("output layer")
    columns = layer_labels(build_model("columnet"))
    assert columns["1.columns.1.1"] == "Tanh after linear 3 in column 2 (layer 7)"
    older = build_model("fast", {"pool_first": False})  # conv, BatchNorm, ReLU, max-pool: maps after the ReLU
    maps = feature_maps(older, digit)
    assert [m.name for m in maps] == [f"conv {i} (layer {4 * i - 3}), after its ReLU" for i in (1, 2, 3)]
    pooled_first = feature_maps(load("fast")[0], digit)  # the pool comes next: the conv's own, unpooled maps
    assert [(m.name, m.maps.shape) for m in pooled_first] == [
        ("conv 1 (layer 1)", (16, 28, 28)),
        ("conv 2 (layer 5)", (32, 14, 14)),
        ("conv 3 (layer 9)", (64, 7, 7)),
    ]
    dense = dense_activations(load("mlp")[0], digit)
    assert [name for name, _ in dense] == [
        "ReLU after linear 1 (layer 3)",
        "ReLU after linear 2 (layer 5)",
        "output layer: logits (layer 6)",
    ]
    assert dense[-1][1].shape == (10,)
