import pytest
import torch

from mnist_core import models
from mnist_core.models import REGISTRY, ModelError, SparseLinear, build_model, describe, effective_weight, make_config

EXPECTED_PARAMS = {  # counted by hand from the layer definitions
    "mlp": 784 * 256 + 256 + 256 * 256 + 256 + 256 * 10 + 10,
    "conv_fc": 32 * 9 + 32 + 32 * 13 * 13 * 10 + 10,
    "conv2_fc2": 320 + 18496 + 9216 * 128 + 128 + 1290,
}


@pytest.mark.parametrize("arch", list(REGISTRY))
def test_every_architecture_maps_a_batch_to_ten_logits(arch):
    torch.manual_seed(0)
    model = build_model(arch)
    out = model(torch.randn(5, 1, 28, 28))
    assert out.shape == (5, 10)
    card = describe(model)
    assert card.params == sum(p.numel() for p in model.parameters())
    assert card.layers[-1].output_shape == (10,)
    assert card.macs > 0


@pytest.mark.parametrize("arch, params", EXPECTED_PARAMS.items())
def test_parameter_counts_match_the_definitions(arch, params):
    assert describe(build_model(arch)).params == params


def test_tiny_gap_is_12k_to_18k_parameters_with_receptive_field_7_before_the_first_pool():
    card = describe(build_model("tiny_gap"))
    assert 12_000 <= card.params <= 18_000
    pool = next(i for i, layer in enumerate(card.layers) if layer.kind == "MaxPool2d")
    assert 7 <= card.layers[pool - 1].receptive_field <= 9
    kinds = [layer.kind for layer in card.layers]
    assert kinds[-3:] == ["AdaptiveAvgPool2d", "Flatten", "Linear"]  # no ReLU, BN or dropout at the head


def test_conv2_fc2_shapes_are_26_then_24():
    shapes = [layer.output_shape for layer in describe(build_model("conv2_fc2")).layers if layer.kind == "Conv2d"]
    assert shapes == [(32, 26, 26), (64, 24, 24)]


def test_cnn_batchnorm_position_is_a_switch():
    def order(bn):
        return [type(m).__name__ for m in build_model("cnn", {"bn": bn})][:3]

    assert order("after") == ["Conv2d", "ReLU", "BatchNorm2d"]
    assert order("before") == ["Conv2d", "BatchNorm2d", "ReLU"]
    assert "BatchNorm2d" not in [type(m).__name__ for m in build_model("cnn", {"bn": "none"})]


def test_columnet_has_one_column_per_activation():
    model = build_model("columnet", {"activations": ["relu", "tanh", "sigmoid"], "width": 32})
    columns = model[1].columns
    assert len(columns) == 3
    assert [type(col[1]).__name__ for col in columns] == ["ReLU", "Tanh", "Sigmoid"]


def test_sparsenet_reports_effective_parameters_at_its_density():
    torch.manual_seed(0)
    model = build_model("sparsenet", {"density": 0.1, "depth": 1, "width": 500})
    card = describe(model)
    sparse = model[1]
    assert isinstance(sparse, SparseLinear)
    assert 0.09 < float(sparse.mask.mean()) < 0.11
    assert card.effective_params == card.params - int((1 - sparse.mask).sum())
    assert bool((sparse.weight[sparse.mask == 0] == 0).all())


def test_a_sparse_layers_weights_are_shown_as_it_computes_with_them():
    torch.manual_seed(0)
    model = build_model("sparsenet", {"density": 0.1, "depth": 1, "width": 50})
    sparse = model[1]
    with torch.no_grad():
        sparse.weight.fill_(1.0)  # stored weights of absent connections are not what the layer uses
    shown = effective_weight(model, "1.weight")
    assert int((shown != 0).sum()) == sparse.connections()
    x = torch.rand(3, 784)
    assert torch.allclose(sparse(x), x @ shown.T + sparse.bias)
    dense = model[-1]
    assert torch.equal(effective_weight(model, f"{len(model) - 1}.weight"), dense.weight)
    assert not effective_weight(model, "1.weight").requires_grad


def test_bad_configs_are_refused_with_the_setting_named():
    with pytest.raises(ModelError, match="unknown architecture 'resnet'"):
        build_model("resnet")
    with pytest.raises(ModelError, match="no setting widht"):
        make_config("mlp", {"widht": 3})
    with pytest.raises(ModelError, match="unknown activation 'swish'; choose one of"):
        make_config("mlp", {"activation": "swish"})
    with pytest.raises(ModelError, match=r"density must be between 0.01 and 1 \(got 0\)"):
        make_config("sparsenet", {"density": 0})
    with pytest.raises(ModelError, match="needs 7 channel widths"):
        build_model("tiny_gap", {"channels": [8, 8]})


@pytest.mark.parametrize(
    "arch, overrides, message",
    [
        ("mlp", {"dropout": float("nan")}, r"dropout must be between 0 and 0.9 \(got nan\)"),
        ("cnn", {"dropout": float("inf")}, r"dropout must be between 0 and 0.9 \(got inf\)"),
        ("mlp", {"width": 64.5}, r"width must be a whole number \(got 64.5\)"),
        ("mlp", {"depth": True}, r"depth must be a whole number \(got True\)"),
        ("mlp", {"activation": 3}, r"activation must be text \(got 3\)"),
        ("cnn", {"channels": 16}, r"channels must be a list \(got 16\)"),
        ("cnn", {"channels": [8, 8, 8, 8, 8]}, "channels: 5 blocks halve the 28-pixel digit to nothing"),
        ("fast", {"channels": [4] * 6}, "channels: 6 blocks"),
    ],
)
def test_configs_that_cannot_work_are_refused_before_training(arch, overrides, message):
    with pytest.raises(ModelError, match=message):
        make_config(arch, overrides)


def test_the_deepest_cnn_that_fits_is_accepted_and_runs():
    model = build_model("cnn", {"channels": [4, 4, 4, 4]})  # 28 -> 14 -> 7 -> 3 -> 1
    assert model(torch.zeros(2, 1, 28, 28)).shape == (2, 10)


def test_checking_a_config_leaves_the_seeded_random_stream_alone():
    torch.manual_seed(0)
    expected = torch.rand(3)
    torch.manual_seed(0)
    make_config("cnn", {"channels": [5, 7]})  # a config not checked before in this process
    assert torch.equal(torch.rand(3), expected)


def test_dropout_keeps_each_value_with_probability_one_minus_p_and_scales_it():
    drop = models.BitMaskDropout(0.3)
    x = torch.ones(400, 3136)
    torch.manual_seed(0)
    y = drop(x)
    for lane in range(4):  # four draws come from each 64-bit random word: each must be a fair draw
        dropped = (y.flatten()[lane::4] == 0).float().mean().item()
        assert abs(dropped - 0.3) < 0.005, (lane, dropped)
    assert torch.allclose(y[y != 0], torch.tensor(1 / 0.7))
    torch.manual_seed(0)
    assert torch.equal(drop(x), y)  # the seed decides the mask, so a seeded run repeats
    assert not torch.equal(drop(x), y)
    assert torch.equal(drop.eval()(x), x)
    odd = torch.ones(3, 7)  # a count of values that is not a multiple of four
    assert drop.train()(odd).shape == odd.shape


def test_dropout_drops_the_same_values_whatever_the_memory_layout():
    """A channels-last run and the exported script (NCHW) must drop the same values to follow one trajectory."""
    drop = models.BitMaskDropout(0.2)
    x = torch.randn(8, 6, 11, 11)
    torch.manual_seed(3)
    nchw = drop(x)
    torch.manual_seed(3)
    nhwc = drop(x.contiguous(memory_format=torch.channels_last))
    assert torch.equal(nchw, nhwc)


def test_dropout_keeps_the_dtype_and_drops_everything_at_p_one():
    assert models.BitMaskDropout(0.3)(torch.ones(100, dtype=torch.bfloat16)).dtype == torch.bfloat16
    for p in (1.0, 1 - 1e-6):  # within 1/131,072 of 1: the int16 threshold would wrap and keep everything
        assert torch.equal(models.BitMaskDropout(p)(torch.ones(1000)), torch.zeros(1000)), p


def test_every_built_dropout_is_the_cheap_one():
    built = [
        build_model("tiny_gap", {}),
        build_model("conv2_fc2", {}),
        build_model("mlp", {"dropout": 0.2}),
        build_model("cnn", {"dropout": 0.1}),
        build_model("stack", {"layers": ["flatten", "dropout 0.3", "linear 10"]}),
    ]
    for net in built:
        drops = [m for m in net.modules() if isinstance(m, torch.nn.Dropout)]
        assert drops and all(type(m) is models.BitMaskDropout for m in drops), net
