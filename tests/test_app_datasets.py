"""The data set choice on every page: the sidebar's "Data set" box, class names where digits' labels were, the
checkpoints of the data set's classes only, and a checkpoint of other classes refused with a message."""

import json
import shutil
from pathlib import Path

import pandas  # noqa: F401  imported whole first: plotly trips on a half-imported pandas another thread is loading
import pytest
from streamlit.testing.v1 import AppTest

from mnist_core import datasets
from mnist_core.checkpoints import save
from mnist_core.data import DeviceData
from mnist_core.train import TrainConfig, fit

ROOT = Path(__file__).resolve().parent.parent
PAGES = ["app.py", *sorted(str(p.relative_to(ROOT)) for p in (ROOT / "pages").glob("*.py"))]
FASHION_RUN = "fashion-tiny"


def page(path: str, dataset: str | None = None) -> AppTest:
    at = AppTest.from_file(str(ROOT / path), default_timeout=300)
    if dataset is not None:
        at.session_state["dataset"] = dataset
    return at


def page_text(at: AppTest) -> str:
    """Everything a visitor reads: text elements, chart specs (axes, legends), HTML, widgets' options, tables."""
    parts = [
        str(e.value)
        for kind in ("markdown", "caption", "info", "warning", "error", "success", "title", "subheader")
        for e in at.get(kind)
    ]
    parts += [str(c.proto.spec) for c in at.get("plotly_chart")]
    parts += [h.proto.body for h in at.get("html")]
    parts += [" ".join(map(str, s.options)) for s in at.selectbox]
    parts += [str(getattr(img.proto, "imgs", "")) for img in at.get("imgs")]
    parts += [df.value.to_string() for df in at.dataframe]
    return "\n".join(parts)


@pytest.fixture(scope="session")
def fashion_run_files(tmp_path_factory):
    """A small MLP trained for 30 steps on Fashion-MNIST, saved once for the session (about 5 s)."""
    folder = tmp_path_factory.mktemp("fashion-run")
    data = DeviceData(datasets.load(datasets.FASHION), device="cpu")
    config = TrainConfig(arch="mlp", dataset=datasets.FASHION, model={"width": 32}, max_batches=30, record=False)
    save(fit(config, data), FASHION_RUN, directory=folder)
    return folder


@pytest.fixture
def fashion_run(runs, fashion_run_files):
    runs.mkdir(parents=True, exist_ok=True)
    for path in fashion_run_files.iterdir():
        shutil.copy(path, runs / path.name)
    return FASHION_RUN


def data_set_box(at: AppTest):
    return at.selectbox(key="dataset.picker")


# Pages that label classes with their data set's names even when no checkpoint of it exists.
NAMES_WITHOUT_A_CHECKPOINT = {"app.py", "pages/1_Data.py", "pages/3_Train.py"}


@pytest.mark.parametrize("path", PAGES)
def test_every_page_runs_on_fashion_mnist_and_shows_it_in_the_sidebar(path, runs):
    at = page(path, datasets.FASHION).run()
    assert not at.exception, [e.message for e in at.exception]
    assert not at.error, [e.value for e in at.error]
    assert data_set_box(at).value == datasets.FASHION
    assert data_set_box(at).options == ["MNIST", "Fashion-MNIST"]  # listed by title
    if path in NAMES_WITHOUT_A_CHECKPOINT:
        text = page_text(at)
        assert "Sneaker" in text and "Ankle boot" in text


@pytest.mark.parametrize("path", PAGES)
def test_every_page_runs_on_a_small_set_of_ones_own(path, runs):
    """80 images, fewer than a map or a default batch needs: a page may refuse with a message, never crash."""
    from tests.test_datasets import write_own_set

    write_own_set(runs, "shapes", ["circle", "square"])
    at = page(path, "own:shapes").run()
    assert not at.exception, [e.message for e in at.exception]
    assert data_set_box(at).value == "own:shapes"


def test_a_small_set_of_ones_own_trains_in_batches_of_its_size_and_the_box_keeps_its_value(runs):
    """60 training images: the Train page's runs use batches of 60; the box keeps 128 for MNIST."""
    from tests.test_datasets import write_own_set

    write_own_set(runs, "shapes", ["circle", "square"])
    at = page("pages/3_Train.py", "own:shapes").run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    assert at.number_input(key="train.batch_size").value == 128
    assert any(c.value == "Batches of 60 here: shapes has 60 training images." for c in at.caption)
    assert '"batch_size": 60' in at.json[0].value
    data_set_box(at).set_value(datasets.MNIST).run()
    assert at.number_input(key="train.batch_size").value == 128 and '"batch_size": 128' in at.json[0].value


def test_the_embeddings_page_says_a_small_set_is_too_small_to_map(runs):
    from tests.test_datasets import write_own_set

    write_own_set(runs, "shapes", ["circle", "square"])
    at = page("pages/2_Embeddings.py", "own:shapes").run()
    assert not at.exception
    assert [e.value for e in at.error] == [
        "shapes has 80 images; a map needs at least 1,000. Import a larger set on the Data page, or pick MNIST or "
        "Fashion-MNIST in the sidebar's Data set box."
    ]


def test_the_data_page_switches_from_digits_to_class_names(runs):
    at = page("pages/1_Data.py").run()
    assert data_set_box(at).value == datasets.MNIST and "Sneaker" not in page_text(at)
    data_set_box(at).set_value(datasets.FASHION).run()
    assert not at.exception, [e.message for e in at.exception]
    assert at.session_state["dataset"] == datasets.FASHION
    text = page_text(at)
    grid = next(h.proto.body for h in at.get("html") if "grid-template-columns" in h.proto.body)
    assert "Sneaker" in grid or "Ankle boot" in grid  # the samples' titles: "#12: Sneaker"
    assert any(c.value.startswith("Mean of Dress minus mean of Bag") for c in at.caption)
    assert "T-shirt/top" in text and "100 train images" in text


def test_a_shared_link_may_name_the_data_set(runs):
    at = page("pages/1_Data.py")
    at.query_params["dataset"] = datasets.FASHION
    at.run()
    assert not at.exception and data_set_box(at).value == datasets.FASHION
    assert "Sneaker" in page_text(at)


def test_an_unknown_data_set_in_a_link_falls_back_to_mnist(runs):
    at = page("pages/1_Data.py")
    at.query_params["dataset"] = "own:nothing-here"
    at.run()
    assert not at.exception and data_set_box(at).value == datasets.MNIST


def test_without_a_checkpoint_of_its_classes_inspect_says_to_train_one(runs):
    from tests.test_datasets import write_own_set

    write_own_set(runs, "shapes", ["circle", "square"])
    at = page("pages/6_Inspect.py", "own:shapes").run()
    assert not at.exception
    assert any("No checkpoint trained on shapes yet: train one on the Train page" in w.value for w in at.warning)


def test_inspect_names_fashion_classes_and_lists_only_its_checkpoints(runs, fashion_run):
    at = page("pages/6_Inspect.py", datasets.FASHION)
    at.session_state["active_checkpoint:fashion-mnist"] = fashion_run
    at.run()
    assert not at.exception, [e.message for e in at.exception]
    active = next(s for s in at.selectbox if s.label == "Active checkpoint")
    assert active.value == fashion_run
    # the only ones trained on its classes: the run and the shipped Fashion-MNIST CNN
    assert len(active.options) == 2 and any(o.startswith("fashion ") for o in map(str, active.options))
    specs = " ".join(str(c.proto.spec) for c in at.get("plotly_chart"))
    assert "Sneaker" in specs and "Ankle boot" in specs  # confusion matrix, per-class accuracy
    # back on MNIST, the Fashion run is not offered and the digits' best shipped checkpoint is active
    data_set_box(at).set_value(datasets.MNIST).run()
    assert not at.exception
    active = next(s for s in at.selectbox if s.label == "Active checkpoint")
    assert not any(fashion_run in option for option in active.options)
    assert at.session_state["active_checkpoint"] == "best"


def test_making_a_checkpoint_of_other_classes_active_is_refused_with_a_message(runs, fashion_run):
    at = page("pages/3_Train.py").run()  # MNIST
    at.selectbox(key="train.run_pick").set_value(fashion_run).run()
    next(b for b in at.button if b.label == "Make active").click().run()
    assert not at.exception
    message = " ".join(e.value for e in at.error)
    assert f"'{fashion_run}' was trained on Fashion-MNIST" in message and "not on MNIST" in message
    assert at.session_state["active_checkpoint"] != fashion_run


def test_draw_reads_digits_and_offers_the_way_back_to_mnist(runs):
    at = page("pages/7_Draw.py", datasets.FASHION).run()
    assert any("Draw reads handwritten digits" in m.value for m in at.info)
    at.button(key="draw.to_mnist").click().run()
    assert not at.exception and at.session_state["dataset"] == datasets.MNIST
    assert data_set_box(at).value == datasets.MNIST


def test_an_embedding_of_fashion_mnist_names_its_classes_in_the_legend(runs):
    at = page("pages/2_Embeddings.py", datasets.FASHION).run()
    at.selectbox(key="emb.method").set_value("pca").run()
    at.number_input(key="emb.points").set_value(1000).run()
    assert not at.exception, [e.message for e in at.exception]
    figure = next(c.proto.spec for c in at.get("plotly_chart") if "images (raw pixels)" in c.proto.spec)
    assert '"name":"Sneaker"' in figure.replace(" ", "") and "Ankle boot" in figure
    assert any("Click a point to see that image here" in c.value for c in at.caption)


def test_compare_trains_on_the_active_data_set_and_can_vary_it(runs):
    at = page("pages/9_Compare.py", datasets.FASHION).run()
    assert not at.exception, [e.message for e in at.exception]
    assert any("Every arm trains on **Fashion-MNIST**" in c.value for c in at.caption)
    assert '"dataset": "fashion-mnist"' in at.json[0].proto.body  # the base setup every arm starts from
    at.selectbox(key="compare.dimension").set_value("dataset").run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    assert any(c.value.startswith("2 runs: MNIST, Fashion-MNIST x seeds") for c in at.caption)


def test_a_data_set_of_ones_own_is_offered_by_its_title_and_drawn_with_its_class_names(runs):
    """An imported set (as mnist_core.uploads leaves one: IDX files and a dataset.json in runs/datasets/NAME);
    here Fashion-MNIST's files under names of one's own."""
    folder = runs / "datasets" / "wardrobe"
    folder.mkdir(parents=True)
    for path in datasets.fashion_dir().iterdir():
        if path.name != "LICENSE":
            shutil.copy(path, folder / path.name)
    names = ["top", "trousers", "jumper", "dress", "coat", "sandal", "shirt", "trainer", "bag", "boot"]
    (folder / "dataset.json").write_text(
        json.dumps({"title": "My wardrobe", "class_names": names, "train": 60_000, "test": 10_000})
    )
    at = page("pages/1_Data.py").run()
    assert data_set_box(at).options == ["MNIST", "Fashion-MNIST", "My wardrobe"]
    data_set_box(at).set_value("own:wardrobe").run()
    assert not at.exception, [e.message for e in at.exception]
    assert "trainer" in page_text(at) and at.session_state["dataset"] == "own:wardrobe"
    assert any(c.value.startswith("Mean of dress minus mean of bag") for c in at.caption)


def test_a_data_set_of_ones_own_can_be_deleted_on_the_data_page_and_mnist_becomes_active(runs):
    from tests.test_datasets import write_own_set

    write_own_set(runs, "shapes", ["circle", "square"])
    at = page("pages/1_Data.py", dataset="own:shapes").run()
    assert not at.exception, [e.message for e in at.exception]
    at.button(key="data.own_delete").click().run()
    assert not at.exception, [e.message for e in at.exception]
    assert not (runs / "datasets" / "shapes").exists()
    assert at.session_state["dataset"] == "mnist"
    assert any("Deleted your data set 'shapes'" in s.value for s in at.success)
    assert data_set_box(at).options == ["MNIST", "Fashion-MNIST"]


def test_a_second_upload_brings_its_own_name_into_the_name_box(runs):
    at = page("pages/1_Data.py").run()
    at.file_uploader(key="data.upload").set_value(("first.zip", b"not a zip", "application/zip")).run()
    assert at.text_input(key="data.upload_name").value == "first"
    at.file_uploader(key="data.upload").set_value(("second.zip", b"not one either", "application/zip")).run()
    assert at.text_input(key="data.upload_name").value == "second"
    assert not at.exception
