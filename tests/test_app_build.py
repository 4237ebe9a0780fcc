"""The Build page in AppTest: add, remove, reorder and edit layers, live shape checks, Start, export; a built
checkpoint used by the other pages."""

import json
import time
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from mnist_core import checkpoints
from mnist_core.compare import arch_arms, plan
from mnist_core.stack import DEFAULT_LAYERS
from mnist_core.starting import load_starting_point
from mnist_core.train import TrainConfig, fit

ROOT = Path(__file__).resolve().parent.parent
BUILD = "pages/5_Build.py"


def page(path: str = BUILD) -> AppTest:
    return AppTest.from_file(str(ROOT / path), default_timeout=120)


def start_button(at: AppTest):
    return at.button(key="build.start_training")


def layer_texts(at: AppTest) -> list[str]:
    return [text for _, text in at.session_state["build.stack"]]


def uid(at: AppTest, index: int) -> int:
    return at.session_state["build.stack"][index][0]


def metric(at: AppTest, label: str) -> str:
    return next(m.value for m in at.metric if m.label == label)


def test_the_default_stack_is_checked_and_can_start(runs):
    at = page().run()
    assert not at.exception, [e.message for e in at.exception]
    assert any("The stack works" in s.value for s in at.success)
    assert metric(at, "Parameters") == "20,586"
    assert metric(at, "Output") == "10"
    assert not start_button(at).disabled


def test_adding_a_layer_that_cannot_work_names_it_and_disables_start_and_removing_it_fixes_the_stack(runs):
    at = page().run()
    n = len(layer_texts(at))
    at.selectbox(key="build.add.kind").set_value("conv").run()
    at.number_input(key="build.add.channels").set_value(8)
    at.button(key="build.add").click().run()
    assert layer_texts(at)[-1] == "conv 8 k=3 s=1 p=1"
    assert any(e.value.startswith(f"layer {n + 1} (conv 8 k=3 s=1 p=1): needs an image") for e in at.error), [
        e.value for e in at.error
    ]
    assert start_button(at).disabled
    at.button(key=f"build.remove.{uid(at, n)}").click().run()
    assert len(layer_texts(at)) == n and not at.error
    assert not start_button(at).disabled


def test_a_layer_added_before_flatten_changes_the_shapes_and_parameters(runs):
    at = page().run()
    before = metric(at, "Parameters")
    at.selectbox(key="build.add.kind").set_value("conv").run()
    at.selectbox(key="build.add.where").set_value("before layer 9").run()  # layer 9 is flatten
    at.button(key="build.add").click().run()
    assert layer_texts(at)[8] == "conv 16 k=3 s=1 p=1" and layer_texts(at)[9] == "flatten"
    assert metric(at, "Parameters") != before and not at.error


def test_editing_a_layer_and_reordering(runs):
    at = page().run()
    at.text_input(key=f"build.layer.{uid(at, 9)}").set_value("linear 12").run()  # the last layer
    assert any("layer 10 (linear 12)" in e.value and "10 outputs" in e.value for e in at.error)
    assert start_button(at).disabled
    at.text_input(key=f"build.layer.{uid(at, 9)}").set_value("linear 10").run()
    assert not at.error
    first = layer_texts(at)[:2]
    at.button(key=f"build.down.{uid(at, 0)}").click().run()
    assert layer_texts(at)[:2] == first[::-1]  # relu, then conv: a relu on the raw digit is still a valid stack
    assert not start_button(at).disabled


def test_start_from_an_architecture_empty_or_one_that_has_no_stack(runs):
    at = page().run()
    options = at.selectbox(key="build.start").options
    at.selectbox(key="build.start").set_value(next(o for o in options if o.startswith("tiny_gap"))).run()
    at.button(key="build.load").click().run()
    assert metric(at, "Parameters") == "15,930" and metric(at, "Receptive field") == "20 px"
    at.selectbox(key="build.start").set_value(next(o for o in options if o.startswith("columnet"))).run()
    at.button(key="build.load").click().run()
    assert any("columnet cannot be written as a layer stack" in e.value for e in at.error)
    at.selectbox(key="build.start").set_value("(empty)").run()
    at.button(key="build.load").click().run()
    assert layer_texts(at) == []
    assert any("the stack is empty" in e.value for e in at.error) and start_button(at).disabled
    starter = next(o for o in options if o.startswith("the starter stack"))
    at.selectbox(key="build.start").set_value(starter).run()
    at.button(key="build.load").click().run()
    assert layer_texts(at) == list(DEFAULT_LAYERS) and not start_button(at).disabled


def test_the_start_box_names_the_stack_the_page_opens_with(runs):
    at = page().run()
    assert at.selectbox(key="build.start").value.startswith("the starter stack")
    assert layer_texts(at) == list(DEFAULT_LAYERS)


def test_the_whole_stack_as_text(runs):
    at = page().run()
    at.text_area(key="build.text").set_value("conv 4 3, relu, pool 2, flatten, linear 10").run()
    at.button(key="build.apply").click().run()
    assert layer_texts(at) == ["conv 4 k=3 s=1 p=0", "relu", "maxpool 2", "flatten", "linear 10"]
    assert metric(at, "Parameters") == f"{4 * 9 + 4 + 4 * 13 * 13 * 10 + 10:,}"
    at.text_area(key="build.text").set_value("conv 4 3, blorp, flatten, linear 10").run()
    at.button(key="build.apply").click().run()
    assert any("unknown layer 'blorp'" in e.value and "Not applied" in e.value for e in at.error)
    assert len(layer_texts(at)) == 5  # the working stack is kept
    assert start_button(at).disabled  # Start would train the stack before this text, not what the box shows
    at.button(key="build.load").click().run()  # the stack changed another way: the box shows it, Start is back
    assert not at.error and not start_button(at).disabled


def test_a_bad_epoch_count_or_run_name_is_named_before_start(runs):
    at = page().run()
    at.number_input(key="build.max_batches").set_value(-3).run()
    assert at.number_input(key="build.max_batches").value == -3  # kept as typed (a bounded widget kept 0)
    assert any("max batches must be between 1 and 10,000,000 (got -3)" in e.value for e in at.error)
    assert start_button(at).disabled
    at.number_input(key="build.max_batches").set_value(0).run()
    at.text_input(key="build.name").set_value("...").run()
    assert at.error and start_button(at).disabled
    at.text_input(key="build.name").set_value("fine-name").run()
    assert not at.error and not start_button(at).disabled


def test_start_trains_the_built_stack_into_a_checkpoint_that_holds_its_layer_list(runs):
    at = page().run()
    at.text_area(key="build.text").set_value("conv 4 3, relu, pool 2, flatten, linear 10").run()
    at.button(key="build.apply").click().run()
    at.number_input(key="build.max_batches").set_value(15)
    at.text_input(key="build.name").set_value("built-apptest")
    start_button(at).click().run()
    assert any("Training **built-apptest**" in s.value for s in at.success), [e.value for e in at.error]
    deadline = time.time() + 120
    while not (runs / "built-apptest.json").exists() and time.time() < deadline:
        time.sleep(0.5)
    meta = json.loads((runs / "built-apptest.json").read_text())
    assert meta["arch"] == "stack"
    assert meta["model_config"]["layers"] == ["conv 4 k=3 s=1 p=0", "relu", "maxpool 2", "flatten", "linear 10"]
    assert meta["train_config"]["optimizer"] == "adam" and meta["train_config"]["label_smoothing"] == 0.1  # fast


@pytest.fixture
def built(runs, data):
    config = TrainConfig(
        arch="stack",
        model={
            "layers": [
                "conv 8 3 p=1",
                "relu",
                "bn",
                "maxpool 2",
                "conv 16 3",
                "relu",
                "maxpool 2",
                "flatten",
                "linear 32",
                "relu",
                "linear 10",
            ]
        },
        max_batches=25,
        device="cpu",
        record=True,
        record_every=5,
    )
    return checkpoints.save(fit(config, data), "built")


@pytest.mark.parametrize(
    "path",
    ["pages/6_Inspect.py", "pages/7_Draw.py", "pages/2_Embeddings.py", "pages/9_Compare.py", "pages/3_Train.py", BUILD],
)
def test_every_page_renders_with_a_built_checkpoint_active(built, path):
    at = page(path)
    at.session_state["active_checkpoint"] = built
    at.run()
    assert not at.exception, [e.message for e in at.exception]
    assert not [e.value for e in at.error if "built" in e.value]


def test_a_built_stack_is_an_arm_of_a_comparison(runs):
    layers = ["conv 4 3", "relu", "flatten", "linear 10"]
    specs = plan(TrainConfig(arch="stack", model={"layers": layers}), arch_arms(["stack", "mlp"]), [0], "cmp")
    assert specs[0].config.model == {"layers": layers} and specs[1].config.arch == "mlp"


def test_the_train_page_takes_a_stack_and_refuses_a_bad_one(runs):
    at = page("pages/3_Train.py").run()
    at.selectbox(key="train.arch").set_value("stack").run()
    assert not at.exception
    at.text_area(key="model.stack.layers").set_value("conv 4 3, linear 10").run()
    assert any("layer 2 (linear 10): needs a flat input" in e.value for e in at.error)
    assert next(b for b in at.button if b.label == "Start training").disabled


def test_export_offers_the_script_and_files_and_says_why_a_fine_tuned_run_has_no_script(runs, data):
    config = TrainConfig(arch="fast", init_checkpoint="fast", max_batches=2, device="cpu", record=False)
    checkpoints.save(fit(config, data, model=load_starting_point(config).model), "tuned")
    at = page().run()
    at.selectbox(key="build.export.pick").set_value("fast").run()
    assert len(at.get("download_button")) == 4  # the script and the three files
    at.button(key="build.onnx").click().run()
    assert any("agree on 10,000 of 10,000 test digits" in c.value for c in at.caption)
    at.selectbox(key="build.export.pick").set_value("tuned").run()
    assert any("was fine-tuned from 'fast'" in i.value for i in at.info) and not at.error  # no script, no fault


def test_inspect_shows_a_built_net_that_pools_before_its_first_linear_layer(runs, data):
    config = TrainConfig(
        arch="stack", model={"layers": ["maxpool 2", "flatten", "linear 10"]}, max_batches=5, device="cpu", record=False
    )
    name = checkpoints.save(fit(config, data), "pooled")
    at = page("pages/6_Inspect.py")
    at.session_state["active_checkpoint"] = name
    at.run()
    assert not at.exception, [e.message for e in at.exception]
    assert not any("Something went wrong" in e.value for e in at.error)  # the page's guard caught nothing
    assert any("not the 784 pixels" in c.value for c in at.caption)
