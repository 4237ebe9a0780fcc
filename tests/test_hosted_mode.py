"""Hosted mode (MNIST_HOSTED=1): every cap the host left unset takes its hosted value, an explicit one wins, and
downloads and parallel comparison runs are off, each where it would happen; maps, GANs and
transfers are bounded by a limit the refusal names. Jobs go through a real Runner on threads."""

import subprocess
import sys
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from mnist_core.host import HOSTED_DEFAULTS, HOSTED_LIMITS, HostSettingError, describe_limits, limits_table, settings
from mnist_core.runner import HostLimits, JobRefused, Runner

ROOT = Path(__file__).resolve().parent.parent
SMALL = {"arch": "mlp", "model": {"depth": 1, "width": 16}, "record": False, "max_batches": 2, "batch_size": 64}
HOSTED_VALUES = {
    "max_jobs": 2,
    "max_queued": 10,
    "max_epochs": 5,
    "max_run_seconds": 300.0,
    "max_compare_runs": 10,
    "max_parallel": 1,
    "max_map_points": 10_000,
    "owner_quota_mb": 50.0,
    "owner_idle_hours": 24.0,
}


@pytest.fixture
def hosted(monkeypatch, runs):
    """Hosted mode with every cap unset (the host's environment must not leak into the defaults under test)."""
    for variable in HOSTED_DEFAULTS:
        monkeypatch.delenv(variable, raising=False)
    monkeypatch.setenv("MNIST_HOSTED", "1")
    return runs


@pytest.fixture
def runner(hosted):
    job_runner = Runner(backend="threads")  # limits from the (hosted) environment, as the app builds them
    yield job_runner
    job_runner.shutdown()


# ---------------------------------------------------------------- the settings


def test_hosted_mode_gives_every_unset_cap_its_hosted_value_and_locally_nothing_changes():
    values = settings({"MNIST_HOSTED": "1"})
    assert {name: getattr(values, name) for name in HOSTED_VALUES} == HOSTED_VALUES
    assert not values.downloads
    local = settings({})
    assert (local.max_jobs, local.max_queued, local.max_compare_runs) == (1, 20, 40)
    assert (local.max_epochs, local.max_run_seconds, local.max_parallel, local.max_map_points) == (None,) * 4
    assert (local.owner_quota_mb, local.owner_idle_hours) == (None, None)
    assert local.downloads
    assert settings({"MNIST_HOSTED": "0"}) == local


def test_an_explicit_value_set_by_the_host_wins_over_the_hosted_one(monkeypatch):
    values = settings(
        {
            "MNIST_HOSTED": "1",
            "MNIST_MAX_JOBS": "4",
            "MNIST_MAX_MAP_POINTS": "20000",
            "MNIST_MAX_PARALLEL": "2",
            "MNIST_MAX_EPOCHS": " ",
            "MNIST_OWNER_QUOTA_MB": "200",
        }
    )
    assert (values.max_jobs, values.max_map_points, values.max_parallel, values.owner_quota_mb) == (4, 20_000, 2, 200)
    assert values.max_epochs == 5  # blank is unset: the hosted value
    with pytest.raises(HostSettingError, match=r"^MNIST_MAX_MAP_POINTS='lots' is not valid: it takes a whole number"):
        settings({"MNIST_HOSTED": "1", "MNIST_MAX_MAP_POINTS": "lots"})  # a bad value is named, not replaced
    with pytest.raises(HostSettingError, match=r"^MNIST_MAX_PARALLEL='0' is not valid"):
        settings({"MNIST_MAX_PARALLEL": "0"})
    for variable in HOSTED_DEFAULTS:
        monkeypatch.delenv(variable, raising=False)
    monkeypatch.setenv("MNIST_HOSTED", "1")
    monkeypatch.setenv("MNIST_MAX_QUEUED", "3")
    assert HostLimits.from_env() == HostLimits(
        max_jobs=2,
        max_epochs=5,
        max_run_seconds=300.0,
        max_compare_runs=10,
        max_queued=3,
        max_parallel=1,
        max_map_points=10_000,
        downloads=False,
    )


def test_the_limits_table_is_one_source_with_the_value_in_force():
    rows = describe_limits({"MNIST_HOSTED": "1", "MNIST_MAX_JOBS": "3"})
    by_setting = {row["setting"]: row for row in rows}
    assert [row["setting"] for row in rows[: len(HOSTED_LIMITS)]] == list(HOSTED_DEFAULTS)
    assert by_setting["MNIST_MAX_JOBS"]["in force"] == "3" and by_setting["MNIST_MAX_EPOCHS"]["in force"] == "5"
    assert [row["in force"] for row in rows if row["setting"] == "MNIST_HOSTED"] == ["off"]
    local = {row["setting"]: row["in force"] for row in describe_limits({})}
    assert local["MNIST_MAX_EPOCHS"] == "no limit" and local["MNIST_MAX_JOBS"] == "1"
    assert all(row["why"] and row["bounds"] for row in rows)
    printed = subprocess.run(
        [sys.executable, "-m", "mnist_core.host"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env={"PATH": "/usr/bin:/bin"},
        timeout=60,
    )
    assert printed.returncode == 0, printed.stderr
    assert printed.stdout.strip() == limits_table({}).strip()
    assert all(f"| `{variable}` |" in printed.stdout for variable in HOSTED_DEFAULTS)


# ---------------------------------------------------------------- the switches


def test_the_home_page_shows_the_hosted_limits(hosted):
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=120).run()
    assert not at.exception, at.exception
    (limits,) = [e for e in at.expander if e.label == "This is a hosted demo: its limits"]
    shown = " ".join(c.value for c in limits.caption)
    assert "MNIST_MAX_MAP_POINTS" in shown and "10000" in shown and "Downloads" in shown


def test_the_home_page_shows_no_limits_when_not_hosted(runs, monkeypatch):
    monkeypatch.delenv("MNIST_HOSTED", raising=False)
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=120).run()
    assert not at.exception and not [e for e in at.expander if "hosted demo" in e.label]


def test_the_transfer_page_offers_no_download_in_hosted_mode_and_says_why(hosted, monkeypatch, tmp_path):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))  # an empty hub cache: ResNet18 is not there
    at = AppTest.from_file(str(ROOT / "pages/10_Transfer.py"), default_timeout=120).run()
    at.selectbox(key="transfer.backbone").set_value("resnet18").run()
    assert not at.exception
    assert any("ResNet18's ImageNet weights are not in the torch hub cache" in e.value for e in at.error)
    assert not [b for b in at.button if b.key == "transfer.download"]
    assert any("Downloads are off in this hosted demo (MNIST_HOSTED=1)" in i.value for i in at.info)
    monkeypatch.setenv("MNIST_HOSTED", "0")  # the same page locally offers the download
    at = AppTest.from_file(str(ROOT / "pages/10_Transfer.py"), default_timeout=120).run()
    at.selectbox(key="transfer.backbone").set_value("resnet18").run()
    assert [b for b in at.button if b.key == "transfer.download"]


def test_a_transfer_job_that_would_download_is_refused_in_hosted_mode(runner, monkeypatch, tmp_path):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))  # an empty hub cache: the work would download
    with pytest.raises(JobRefused) as refused:
        runner.submit("browser-hosted0000000006", "transfer", {"backbone": "resnet18", "arms": ["frozen"], "steps": 10})
    assert refused.value.limit == "downloads"
    assert str(refused.value).startswith(
        "downloads are off on this host (MNIST_HOSTED=1) and ResNet18's ImageNet weights are not in the torch hub cache"
    )
    assert not (tmp_path / "torch").exists()  # nothing was fetched
    job = runner.submit(
        "browser-hosted0000000006",
        "transfer",  # the shipped backbone needs no download
        {"backbone": "fashion_cnn", "arms": ["frozen"], "labels": 100, "steps": 10, "batch_size": 32},
    )
    done = runner.wait(job.id, timeout=120)
    assert done.status == "done", done.message


def test_a_comparison_asking_for_parallel_runs_trains_them_one_at_a_time(runner):
    config = {"base": SMALL, "dimension": "optimizer", "values": ["SGD", "Adam"], "seeds": [0], "parallel": 2}
    job = runner.submit("browser-hosted0000000001", "compare", config, "hosted-cmp")
    assert job.spec.config["parallel"] == 1
    done = runner.wait(job.id, timeout=120)
    assert done.status == "done" and done.message == "2 of 2 runs finished", done.message


def test_the_compare_page_offers_one_run_at_a_time_in_hosted_mode(hosted):
    at = AppTest.from_file(str(ROOT / "pages/9_Compare.py"), default_timeout=120).run()
    parallel = at.number_input(key="compare.parallel")
    assert parallel.max == 1 and "at most 1 at once (MNIST_MAX_PARALLEL)" in parallel.help


def test_a_map_over_the_hosted_bound_is_refused_naming_it_and_one_within_runs(runner):
    with pytest.raises(JobRefused) as refused:
        runner.submit("browser-hosted0000000002", "embed", {"method": "umap", "points": 20_000})
    assert refused.value.limit == "max_map_points"
    assert str(refused.value) == (
        "this host maps at most 10,000 digits at once (MNIST_MAX_MAP_POINTS); you asked for "
        "20,000: choose 10,000 or fewer"
    )
    job = runner.submit("browser-hosted0000000002", "embed", {"method": "pca", "points": 10_000})
    done = runner.wait(job.id, timeout=120)
    assert done.status == "done" and done.result["coords"].shape == (10_000, 2), done.message


def test_an_explicit_map_bound_lets_a_larger_map_run(hosted, monkeypatch):
    monkeypatch.setenv("MNIST_MAX_MAP_POINTS", "20000")
    job_runner = Runner(backend="threads")
    try:
        job = job_runner.submit("browser-hosted0000000003", "embed", {"method": "pca", "points": 20_000})
        done = job_runner.wait(job.id, timeout=120)
        assert done.status == "done" and done.result["coords"].shape == (20_000, 2), done.message
    finally:
        job_runner.shutdown()


def test_the_embeddings_page_takes_no_more_digits_than_the_bound_and_says_so(hosted):
    at = AppTest.from_file(str(ROOT / "pages/2_Embeddings.py"), default_timeout=120).run()
    points = at.number_input(key="emb.points")
    assert points.value == 10_000 and "at most 10,000 (MNIST_MAX_MAP_POINTS)" in points.help  # the default lowered
    points.set_value(20_000).run()
    assert at.number_input(key="emb.points").value == 20_000  # kept as typed, and named
    assert [e.value for e in at.error] == [
        "Images (stratified by class): 20,000 is more than this page takes. This host maps at most 10,000 "
        "(MNIST_MAX_MAP_POINTS)."
    ]
    assert not at.get("plotly_chart") and not any(b.key == "emb.compute" for b in at.button)
    at.number_input(key="emb.points").set_value(10_000).run()
    assert not at.error and not at.exception
    assert at.get("plotly_chart") or any(b.key == "emb.compute" for b in at.button)  # the page goes on


@pytest.mark.parametrize(
    "kind, config, epoch",
    [
        ("gan", {"epochs": 6}, "an epoch is one pass of the GAN over the 60,000 training digits"),
        (
            "transfer",
            {"arms": ["scratch"], "steps": 3000, "batch_size": 128},
            "an epoch is 60,000 digits shown to an arm",
        ),
        ("train", {**SMALL, "epochs": 6}, "an epoch is one pass over the training images"),
    ],
)
def test_gan_transfer_and_training_lengths_are_bounded_by_the_hosted_epoch_cap(runner, kind, config, epoch):
    with pytest.raises(JobRefused) as refused:
        runner.submit("browser-hosted0000000004", kind, config)
    message = str(refused.value)
    assert refused.value.limit == "max_epochs"
    assert message.startswith("this host allows at most 5 epochs per run (MNIST_MAX_EPOCHS; ") and epoch in message


def test_every_hosted_job_is_bounded_in_time(runner):
    assert runner.limits.max_run_seconds == 300.0  # the runner stops any kind of job at this limit
    job = runner.submit("browser-hosted0000000005", "train", {**SMALL, "epochs": 1}, "hosted-train")
    assert job.spec.config["max_seconds"] == 300.0
    done = runner.wait(job.id, timeout=120)
    assert done.status == "done", done.message


def test_the_readmes_hosted_table_is_the_one_the_code_prints():
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")
    assert limits_table({}) in readme, "README's hosted-mode table differs from `python -m mnist_core.host`"
