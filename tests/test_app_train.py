"""The Train and Compare pages check everything before Start: names, shapes, memory, existing runs."""

from pathlib import Path

from streamlit.testing.v1 import AppTest

from mnist_core.checkpoints import save
from mnist_core.train import TrainConfig, fit

ROOT = Path(__file__).resolve().parent.parent


def page(path: str) -> AppTest:
    return AppTest.from_file(str(ROOT / path), default_timeout=120)


def start_button(at: AppTest, label: str = "Start training"):
    return next(b for b in at.button if b.label == label)


def test_bad_run_names_are_refused_before_start(runs):
    at = page("pages/3_Train.py").run()
    assert not start_button(at).disabled
    for name, message in (
        ("...", "no usable characters"),
        ("数字", "no usable characters"),
        ("best", "shipped checkpoint"),
    ):
        at.text_input(key="train.name").set_value(name).run()
        assert any(message in e.value for e in at.error), (name, [e.value for e in at.error])
        assert start_button(at).disabled, name
    at.text_input(key="train.name").set_value("   ").run()  # the name is optional: spaces mean the default name
    assert not at.error and not start_button(at).disabled
    assert not at.exception


def test_replacing_an_existing_run_asks_first(runs):
    runs.mkdir(parents=True, exist_ok=True)
    (runs / "mine.json").write_text("{}")  # a run of that name (unreadable, but it holds the name)
    (runs / "mine.safetensors").write_bytes(b"")
    at = page("pages/3_Train.py").run()
    at.text_input(key="train.name").set_value("mine").run()
    assert start_button(at).disabled
    at.checkbox(key="train.overwrite").check().run()
    assert not start_button(at).disabled


def test_a_cnn_that_shrinks_to_nothing_and_a_run_too_big_for_memory_are_refused(runs):
    at = page("pages/3_Train.py").run()
    at.selectbox(key="train.arch").set_value("cnn").run()
    at.text_input(key="model.cnn.channels").set_value("8, 8, 8, 8, 8").run()
    assert start_button(at).disabled and at.error
    at.text_input(key="model.cnn.channels").set_value("512, 512, 512").run()
    at.number_input(key="train.batch_size").set_value(60_000).run()
    memory = [e.value for e in at.error if "GB of memory" in e.value]
    assert memory and "batch 60000" in memory[0], [e.value for e in at.error]
    assert start_button(at).disabled
    assert not at.exception


def test_unreadable_channels_are_refused_once_and_no_model_card_describes_another_net(runs):
    at = page("pages/3_Train.py").run()
    at.selectbox(key="train.arch").set_value("cnn").run()
    assert [m.label for m in at.metric][0] == "Parameters"
    for text in ("abc", "16,,32", "16, 32,", "2 4"):
        at.text_input(key="model.cnn.channels").set_value(text).run()
        assert [e.value for e in at.error] == [
            "Channels: write whole numbers from 1 to 512 separated by commas, e.g. 16, 32, 64"
        ], text
        assert not at.metric and start_button(at).disabled, text
    at.text_input(key="model.cnn.channels").set_value("16, 32").run()
    assert not at.error and at.metric and not start_button(at).disabled
    assert not at.exception


def test_compare_names_are_per_visitor_and_taken_names_ask_first(runs):
    first = page("pages/9_Compare.py").run()
    name = first.text_input(key="compare.name.optimizer").value
    assert name.startswith("cmp-optimizer-") and name != "cmp-optimizer"  # date and time: not shared by everyone
    first.text_input(key="compare.name.optimizer").set_value("...").run()
    assert any("no usable characters" in e.value for e in first.error)
    assert start_button(first, "Start comparison").disabled
    runs.mkdir(parents=True, exist_ok=True)
    (runs / "taken-SGD-s0.json").write_text("{}")
    first.text_input(key="compare.name.optimizer").set_value("taken").run()
    assert start_button(first, "Start comparison").disabled
    first.checkbox(key="compare.overwrite").check().run()
    assert not start_button(first, "Start comparison").disabled
    assert not first.exception


def test_the_model_cards_layer_table_names_layers_in_words(runs):
    at = page("pages/3_Train.py").run()
    at.selectbox(key="train.arch").set_value("cnn").run()
    table = next(df.value for df in at.dataframe if "multiply-adds" in df.value.columns)
    assert list(table["layer"][:3]) == [
        "conv 1 (layer 1)",
        "ReLU after conv 1 (layer 2)",
        "BatchNorm after conv 1 (layer 3)",
    ]
    assert list(table["module"][:3]) == ["0", "1", "2"]  # the module path is still there for readers of the code


def test_deleting_a_run_asks_once_more_and_keep_it_keeps_it(runs, data):
    save(fit(TrainConfig(arch="mlp", model={"depth": 1, "width": 8}, max_batches=2, record=False), data), "mine")
    at = page("pages/3_Train.py").run()
    at.selectbox(key="train.run_pick").set_value("mine").run()
    next(b for b in at.button if b.label == "Delete").click().run()
    assert (runs / "mine.json").exists()  # not yet
    assert any("Delete the run **mine** for good?" in w.value for w in at.warning)
    at.button(key="train.delete_cancel").click().run()
    assert (runs / "mine.json").exists() and not at.warning
    next(b for b in at.button if b.label == "Delete").click().run()
    at.selectbox(key="train.run_pick").set_value("best").run()  # looked elsewhere: the question is dropped
    at.selectbox(key="train.run_pick").set_value("mine").run()
    assert not at.warning and (runs / "mine.json").exists()
    next(b for b in at.button if b.label == "Delete").click().run()
    at.button(key="train.delete_confirm").click().run()
    assert not (runs / "mine.json").exists() and "mine" not in at.selectbox(key="train.run_pick").options
    assert not at.exception and not at.error


def test_settings_that_do_not_apply_to_the_chosen_optimizer_or_schedule_are_hidden(runs):
    at = page("pages/3_Train.py").run()

    def shown() -> set[str]:
        return {w.key for w in [*at.number_input, *at.checkbox]}

    at.selectbox(key="train.optimizer").set_value("adam").run()
    at.selectbox(key="train.schedule").set_value("cosine").run()
    assert not {"train.momentum", "train.nesterov", "train.step_size", "train.gamma"} & shown()
    at.selectbox(key="train.optimizer").set_value("sgd").run()
    assert {"train.momentum", "train.nesterov"} <= shown()
    at.checkbox(key="train.nesterov").check().run()
    at.selectbox(key="train.schedule").set_value("step").run()
    assert {"train.step_size", "train.gamma"} <= shown()
    # Nesterov ticked under SGD, then RMSprop chosen: the hidden box no longer counts, so nothing is refused.
    at.selectbox(key="train.optimizer").set_value("rmsprop").run()
    assert "train.momentum" in shown() and "train.nesterov" not in shown()
    assert not at.error and not start_button(at).disabled
    at.number_input(key="train.momentum").set_value(0.5).run()
    at.selectbox(key="train.optimizer").set_value("adam").run()
    at.selectbox(key="train.optimizer").set_value("sgd").run()
    assert at.number_input(key="train.momentum").value == 0.5  # a hidden setting keeps what the user typed
    assert not at.exception
