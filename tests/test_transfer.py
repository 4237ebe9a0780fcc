"""Transfer learning: real backbones, frozen while heads train, features cached, clear offline messages."""

import json
import threading
import time

import numpy as np
import pytest
import torch

from mnist_core.data import balanced_order
from mnist_core.reporter import Reporter
from mnist_core.saliency import feature_maps
from mnist_core.transfer import (
    BACKBONE_DIR,
    Backbone,
    BackboneUnavailable,
    TransferConfig,
    TransferError,
    TransferStopped,
    cached_features,
    fresh_fashion_cnn,
    load_backbone,
    run_transfer,
)


@pytest.fixture(scope="module")
def fashion():
    return load_backbone("fashion_cnn")


def weights_of(backbone):
    return [t.clone() for module in (backbone.trunk, backbone.tail) for t in module.state_dict().values()]


def test_the_shipped_fashion_backbone_learned_fashion_mnist():
    meta = json.loads((BACKBONE_DIR / "fashion_cnn.json").read_text())
    assert meta["fashion_test_accuracy"] >= 0.88  # a real classifier of clothes, not random weights
    assert "Fashion-MNIST" in meta["data"]


def test_a_frozen_backbone_does_not_change_while_heads_train(fashion, mnist, tmp_path):
    before = weights_of(fashion)
    config = TransferConfig("fashion_cnn", labels=100, steps=30, arms=("frozen", "unfrozen"))
    results = run_transfer(config, mnist, fashion, directory=tmp_path)
    after = weights_of(fashion)
    assert all(torch.equal(a, b) for a, b in zip(before, after))
    frozen, unfrozen = results
    assert frozen.trainable_params == 1152 * 10 + 10  # the head alone
    assert unfrozen.trainable_params > frozen.trainable_params  # the last block trained too, on a copy
    assert all(r.test_accuracy > 0.5 for r in results), [r.test_accuracy for r in results]


def test_features_are_computed_once_and_only_the_new_ones_later(fashion, mnist, tmp_path):
    first = cached_features(fashion, mnist, 50, directory=tmp_path)
    assert first.seconds > 0 and first.train.shape == (50, 1152) and first.test.shape == (10_000, 1152)
    calls = []
    more = cached_features(fashion, mnist, 80, progress=lambda f, stage: calls.append(stage), directory=tmp_path)
    assert calls and calls[-1] == "features of 30 of 30 digits"  # the test set and the first 50 came from disk
    assert torch.equal(more.train[:50], first.train)
    again = cached_features(fashion, mnist, 80, directory=tmp_path)
    assert again.seconds == 0.0 and torch.equal(again.train, more.train)
    direct = fashion.features(mnist.train_images[balanced_order(mnist.train_labels)[:80]])
    assert torch.allclose(direct.to(torch.float16).float(), more.train)


def test_a_stop_during_feature_extraction_keeps_what_was_computed(fashion, mnist, tmp_path):
    stop = threading.Event()

    def stop_after_the_test_set(fraction, stage):
        if stage.startswith("features of 10,256 of"):  # the test set, then one batch of training digits
            stop.set()

    with pytest.raises(TransferStopped, match="kept for next time"):
        cached_features(fashion, mnist, 1000, progress=stop_after_the_test_set, directory=tmp_path, stop=stop)
    calls = []
    resumed = cached_features(fashion, mnist, 1000, progress=lambda f, stage: calls.append(stage), directory=tmp_path)
    assert calls[-1] == "features of 744 of 744 digits"  # only the digits the stopped run had not reached
    direct = fashion.features(mnist.train_images[balanced_order(mnist.train_labels)[:1000]])
    assert torch.allclose(direct.to(torch.float16).float(), resumed.train)


def test_a_stop_during_training_ends_the_run_after_that_batch(fashion, mnist, tmp_path):
    stop = threading.Event()
    config = TransferConfig("fashion_cnn", labels=100, steps=400, arms=("scratch", "frozen"))
    events = []

    def on_event(name, data):
        events.append(name)
        if name == "arm" and data["result"]["curve"][-1]["step"] >= 80:
            stop.set()

    results = run_transfer(config, mnist, fashion, Reporter(on_event, stop), directory=tmp_path)
    assert [r.arm for r in results] == ["scratch"]  # the frozen arm never started
    (scratch,) = results
    assert scratch.stopped == "stopped at step 80 of 400" and scratch.curve[-1]["step"] == 80
    assert scratch.test_accuracy is None  # no full test pass after a stop
    assert {"stage", "progress", "arm"} <= set(events)


def test_the_labelled_digits_are_class_balanced_and_the_same_for_every_arm(fashion, mnist, tmp_path):
    feats = cached_features(fashion, mnist, 100, directory=tmp_path)
    assert torch.bincount(feats.train_labels, minlength=10).tolist() == [10] * 10


def test_pretrained_features_beat_random_ones_and_more_labels_beat_fewer(fashion, mnist, tmp_path):
    trunk, tail = fresh_fashion_cnn()  # the same architecture with random weights, frozen the same way
    random = Backbone(fashion.info, trunk, tail, fashion.mean, fashion.std, "random")
    config = TransferConfig("fashion_cnn", labels=1000, steps=300, arms=("frozen",))
    (pretrained,) = run_transfer(config, mnist, fashion, directory=tmp_path)
    (untrained,) = run_transfer(config, mnist, random, directory=tmp_path)
    config.labels = 100
    (fewer,) = run_transfer(config, mnist, fashion, directory=tmp_path)
    # Measured: 95.0% vs 88.9% with 1,000 labels; 83.9% with 100.
    assert pretrained.test_accuracy > untrained.test_accuracy + 0.03, (
        pretrained.test_accuracy,
        untrained.test_accuracy,
    )
    assert pretrained.test_accuracy > fewer.test_accuracy + 0.05, (pretrained.test_accuracy, fewer.test_accuracy)


def test_efficientnet_lite0_loads_its_imagenet_weights_offline(mnist):
    backbone = load_backbone("efficientnet_lite0")
    feats = backbone.features(mnist.test_images[:4])
    assert feats.shape == (4, 1280) and torch.isfinite(feats).all()
    stem = backbone.trunk.stem.weight
    assert stem.shape == (32, 3, 3, 3) and float(stem.std()) > 0.05  # trained filters, not a fresh init's scale


def test_every_backbone_shows_its_conv_layers_by_name(fashion, mnist):
    efficient = load_backbone("efficientnet_lite0")  # its convs are nn.Conv2d subclasses holding a padding module
    for backbone, convs in ((efficient, 49), (fashion, 3)):
        maps = feature_maps(backbone.network, backbone.prepare(mnist.test_images[:1]))
        assert len(maps) == convs
        assert maps[0].name.startswith("conv 1 (layer 1)") and maps[-1].name.startswith(f"conv {convs} (layer")
        assert all(m.maps.ndim == 3 and np.isfinite(m.maps).all() for m in maps)
    assert maps[0].name == "conv 1 (layer 1), after its ReLU"  # the fashion CNN: conv, ReLU in one Sequential


def test_a_missing_torchvision_weight_says_so_at_once(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    with pytest.raises(BackboneUnavailable, match=r"ResNet18's ImageNet weights are not in the torch hub cache"):
        load_backbone("resnet18", allow_download=False)
    for var in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY"):
        monkeypatch.setenv(var, "http://127.0.0.1:9")  # a closed port: the download fails the way offline does
    started = time.time()
    with pytest.raises(BackboneUnavailable, match=r"could not be downloaded .*copy resnet18-\w+\.pth into"):
        load_backbone("resnet18", allow_download=True, timeout_s=5)
    assert time.time() - started < 30


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"backbone": "alexnet"}, "unknown backbone 'alexnet'"),
        ({"labels": 5}, "labelled digits must be between 10 and 60,000"),
        ({"lr": 0.0}, "learning rate must be a positive number"),
        ({"arms": ()}, "choose at least one of frozen, unfrozen, scratch"),
    ],
)
def test_bad_transfer_settings_say_what_is_wrong(change, message):
    with pytest.raises(TransferError, match=message):
        TransferConfig(**change).validate()
