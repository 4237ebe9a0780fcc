"""The layer-stack architecture: shape checking, building, reading stacks back, training and reloading."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from mnist_core import checkpoints, stack
from mnist_core.models import ModelError, build_model, describe, make_config
from mnist_core.train import TrainConfig, fit

ROOT = Path(__file__).resolve().parent.parent

GOOD = [  # (stack, output shape of each layer)
    (
        "conv 16 3, relu, bn, pool 2, flatten, linear 10",
        [(16, 26, 26), (16, 26, 26), (16, 26, 26), (16, 13, 13), (2704,), (10,)],
    ),
    ("flatten, linear 64, tanh, dropout 0.2, bn, linear 10", [(784,), (64,), (64,), (64,), (64,), (10,)]),
    (
        "conv 8 5 s=2 p=2, gelu, residual, avgpool 2, gap, flatten, linear 10",
        [(8, 14, 14), (8, 14, 14), (8, 14, 14), (8, 7, 7), (8, 1, 1), (8,), (10,)],
    ),
    (
        '[{"type": "conv", "channels": 4, "kernel": 3, "padding": 1}, "maxpool 3 s=2 p=1", "flatten", "linear 10"]',
        [(4, 28, 28), (4, 14, 14), (784,), (10,)],
    ),
]

BAD = [  # (stack, the layer named, words the message must hold)
    ("conv 16 3, linear 10", 2, "needs a flat input but gets 16 x 26 x 26; put flatten before it"),
    ("conv 16 3, flatten, linear 12", 3, "must end in 10 outputs"),
    ("conv 16 3, relu", 2, "finish with flatten, linear 10"),
    ("pool 2, pool 2, pool 2, pool 2, pool 2, flatten, linear 10", 5, "the size would reach zero"),
    ("conv 8 3, conv 8 27, flatten, linear 10", 2, "kernel does not fit in its 26x26 input"),
    ("flatten, conv 4 3, linear 10", 2, "needs an image (channels x height x width) but gets a flat vector of 784"),
    ("flatten, residual, linear 10", 2, "needs an image"),
    ("conv 2000 3, flatten, linear 10", 1, "channels 2000 is outside 1-1024"),
    ("maxpool 2 p=2, flatten, linear 10", 1, "padding 2 must be at most half the window"),
    ("dropout 1.0, flatten, linear 10", 1, "p 1 must be in [0, 1)"),
    ("conv 16 3, frobnicate, flatten, linear 10", 2, "unknown layer 'frobnicate'"),
    ("conv, flatten, linear 10", 1, "conv needs its channels"),
    ("conv 8 3 q=1, flatten, linear 10", 1, "conv has no setting 'q'"),
    ("conv 8 three, flatten, linear 10", 1, "kernel must be a whole number"),
    ("flatten, linear 8192, linear 8192, linear 10", 3, "the builder's limit is 20,000,000"),
    ("conv 512 3 p=1, conv 512 3 p=1, flatten, linear 10", 2, "multiply-adds per image here; the builder's limit"),
    (
        ["conv 8 3", " ", "flatten", "linear 10"],
        2,
        "layer 2 (empty): write a layer such as 'conv 16 3' there, or remove",
    ),
    ("", None, "the stack is empty"),
]


@pytest.mark.parametrize("spec, shapes", GOOD)
def test_good_stacks_have_the_shapes_params_and_multiply_adds_of_the_built_module(spec, shapes):
    result = stack.check(spec)
    assert result.ok, result.error
    assert [row.output_shape for row in result.rows] == shapes
    model = stack.build(spec)
    card = describe(model)
    assert model(torch.randn(3, 1, 28, 28)).shape == (3, 10)
    assert result.params == card.params == sum(p.numel() for p in model.parameters())
    assert result.macs == card.macs


@pytest.mark.parametrize("spec, index, words", BAD)
def test_bad_stacks_name_the_layer_and_say_why(spec, index, words):
    result = stack.check(spec)
    assert not result.ok
    assert words in result.error, result.error
    assert result.error_index == index
    if index is not None:
        assert result.error.startswith(f"layer {index} ")
    with pytest.raises(ModelError, match="layer" if index else "empty"):
        stack.build(spec)


def test_a_large_conv_padding_is_fine_when_the_shapes_work():
    assert stack.check("conv 8 3 p=9, flatten, linear 10").rows[0].output_shape == (8, 44, 44)


def test_receptive_field_grows_with_kernels_and_strides():
    spec = "conv 8 3, conv 8 3, maxpool 2, conv 8 3, flatten, linear 10"
    result = stack.check(spec)
    assert [r.receptive_field for r in result.rows] == [3, 5, 6, 10, None, None]
    assert result.receptive_field == 10 == describe(stack.build(spec)).receptive_field


@pytest.mark.parametrize("arch", ["mlp", "cnn", "fast", "conv_fc", "conv2_fc2", "tiny_gap"])
def test_every_plain_shipped_architecture_reads_back_as_a_stack_that_builds_the_same_net(arch):
    layers = stack.stack_of_arch(arch)
    torch.manual_seed(0)
    original = build_model(arch)
    torch.manual_seed(0)
    rebuilt = build_model("stack", {"layers": list(layers)})
    a, b = original.state_dict(), rebuilt.state_dict()
    assert a.keys() == b.keys() and all(a[k].shape == b[k].shape for k in a)
    if arch != "conv_fc":  # conv_fc's builder makes its head before its conv, so its seeded init differs
        assert all(torch.equal(a[k], b[k]) for k in a)  # same layers in the same order: same seeded init


@pytest.mark.parametrize("arch, part", [("columnet", "Columns"), ("sparsenet", "SparseLinear")])
def test_architectures_that_are_not_a_plain_stack_say_why(arch, part):
    with pytest.raises(ModelError, match=f"{arch} cannot be written as a layer stack: its {part}"):
        stack.stack_of_arch(arch)


def test_the_config_stores_the_canonical_layer_text_and_refuses_a_bad_stack():
    config = make_config("stack", {"layers": ["conv 16 3 p=1", "ReLU", "pool 2", "flatten", "fc 10"]})
    assert config.layers == ("conv 16 k=3 s=1 p=1", "relu", "maxpool 2", "flatten", "linear 10")
    assert make_config("stack", {"layers": list(config.layers)}) == config
    with pytest.raises(ModelError, match=r"layer 2 \(linear 10\): needs a flat input"):
        make_config("stack", {"layers": ["conv 16 3", "linear 10"]})
    with pytest.raises(ModelError, match=r"layer 2 \(linear 10\)"):
        TrainConfig(arch="stack", model={"layers": ["conv 16 3", "linear 10"]}).validate()


def test_a_built_stack_trains_and_its_checkpoint_reloads_with_identical_outputs(data, runs):
    layers = ["conv 8 3 p=1", "relu", "bn", "maxpool 2", "residual", "dropout 0.1", "maxpool 2", "flatten", "linear 10"]
    config = TrainConfig(arch="stack", model={"layers": layers}, max_batches=40, lr=3e-3, device="cpu", record=False)
    result = fit(config, data)
    assert result.steps == 40 and result.status != "failed"
    assert result.test_accuracy > 0.5  # well above chance (0.1) after 40 batches
    name = checkpoints.save(result, "built")
    meta = json.loads((runs / "built.json").read_text())
    assert meta["arch"] == "stack"
    assert meta["model_config"]["layers"][4] == "residual"  # the layer list, as data
    model, _ = checkpoints.load(name)
    x = data.test.images[:64]
    result.model.eval()
    with torch.no_grad():
        assert torch.equal(model(x), result.model(x))


@pytest.mark.parametrize("first", ["mnist_core.stack", "mnist_core.models", "mnist_core.export"])
def test_the_stack_registers_whichever_module_is_imported_first(first):
    code = f"import {first}; from mnist_core.models import REGISTRY; print('stack' in REGISTRY)"
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.stdout.strip() == "True", done.stderr


def cli(*args, env_extra=None):
    env = dict(os.environ, PYTHONWARNINGS="ignore", **(env_extra or {}))
    return subprocess.run(
        [sys.executable, "-m", "mnist_core", *args], cwd=ROOT, capture_output=True, text=True, timeout=300, env=env
    )


def test_the_cli_trains_a_stack_given_as_text_or_json_and_refuses_a_bad_one_in_one_line(tmp_path):
    done = cli("train", "--layers", "conv 8 3, relu, bn, pool 2, flatten, linear 10", "--dry-run", "--quiet")
    assert done.returncode == 0, done.stderr
    spec = tmp_path / "net.json"
    spec.write_text(json.dumps([{"type": "conv", "channels": 8, "kernel": 3}, "relu", "flatten", "linear 10"]))
    done = cli(
        "train",
        "--layers",
        str(spec),
        "--max-batches",
        "3",
        "--quiet",
        "--name",
        "from-json",
        env_extra={"MNIST_RUNS_DIR": str(tmp_path)},
    )
    assert done.returncode == 0, done.stderr
    meta = json.loads((tmp_path / "from-json.json").read_text())
    assert meta["model_config"]["layers"] == ["conv 8 k=3 s=1 p=0", "relu", "flatten", "linear 10"]
    assert "--set 'layers=conv 8 k=3 s=1 p=0,relu,flatten,linear 10'" in meta["command"]
    for args, words in [
        (["--layers", "conv 16 3, relu, bn, pool 2, flatten, linear 12"], "layer 6 (linear 12)"),
        (["--layers", "conv 16 3, flatten, linear 10", "--arch", "mlp"], "drop --arch mlp"),
        (["--layers", str(tmp_path / "missing.json")], "cannot read"),
    ]:
        done = cli("train", *args, "--dry-run")
        assert done.returncode == 2
        lines = done.stderr.strip().splitlines()
        assert len(lines) == 1 and words in lines[0], done.stderr


def test_a_long_layer_list_is_read_as_a_stack_not_a_file_name():
    from mnist_core.export_cli import layers_arg

    layers = layers_arg(", ".join(["conv 8 3 p=1, relu"] * 30) + ", flatten, linear 10")  # over 255 characters
    assert len(layers) == 62
