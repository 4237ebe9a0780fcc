"""The job kinds: each checks its config at submit, runs its work with one reporter, and returns a plain result."""

import json
import subprocess
import sys
import threading
from pathlib import Path
from types import SimpleNamespace

import pytest

from mnist_core import kinds
from mnist_core.checkpoints import find, load
from mnist_core.reporter import DONE, STOPPED, Reporter, collecting_reporter
from mnist_core.runner import HostLimits, JobRefused
from mnist_core.train import ConfigError, evaluate

ROOT = Path(__file__).resolve().parent.parent
SMALL = {"arch": "mlp", "model": {"depth": 1, "width": 16}, "record": False}
TWO_EPOCHS = {**SMALL, "train_subset": 500, "batch_size": 100, "epochs": 2}


def spec(kind, config, name=None, runs_dir=None, overwrite=False):
    """What the runner sends to a worker (a JobSpec's fields)."""
    return SimpleNamespace(
        id="test",
        kind=kind,
        owner="me",
        config=config,
        name=name,
        overwrite=overwrite,
        runs_dir=str(runs_dir) if runs_dir else None,
    )


def test_every_kind_names_its_page_and_its_work_function():
    for name, k in kinds.KINDS.items():
        assert k.name == name and (ROOT / k.page).is_file(), name
        assert callable(kinds.work_function(name)), name
    with pytest.raises(ValueError, match="unknown job kind 'nope'"):
        kinds.kind("nope")


def test_train_prepare_checks_settings_and_applies_the_hosts_caps():
    with pytest.raises(ConfigError, match="unknown training setting 'epoch'"):
        kinds.kind("train").prepare({**SMALL, "epoch": 3}, HostLimits())
    with pytest.raises(ConfigError, match="learning rate"):
        kinds.kind("train").prepare({**SMALL, "lr": -1.0}, HostLimits())
    with pytest.raises(JobRefused, match="at most 2 epochs per run .*MNIST_MAX_EPOCHS.*pass over the training"):
        kinds.kind("train").prepare({**SMALL, "epochs": 3}, HostLimits(max_epochs=2))
    config = kinds.kind("train").prepare({**SMALL, "epochs": 2}, HostLimits(max_epochs=2, max_run_seconds=5.0))
    assert config["epochs"] == 2 and config["max_seconds"] == 5.0


def test_train_view_smooths_curves_and_keeps_a_steady_eta():
    view = kinds.kind("train").view({**SMALL, "epochs": 3, "max_batches": 1000})
    elapsed, step = 0.0, 0
    for second in range(20):  # 10 steps a second, then one second where a page stole the CPU
        rate = 1 if second == 15 else 10
        for _ in range(rate):
            step += 1
            elapsed += 1.0 / rate
            view.on_event(
                "batch",
                {
                    "step": step,
                    "epoch": 1,
                    "loss": 1.0 if step > 1 else 3.0,
                    "accuracy": 0.5,
                    "images_per_s": 0.0,
                    "elapsed": elapsed,
                },
            )
    assert view.total_steps == 1000
    assert 60 < view.eta_seconds < 150  # about (1000 - 191) / 10 steps a second, not 809 s at the stall's rate
    assert view.batch_curve[1]["loss"] == pytest.approx(0.9 * 3.0 + 0.1 * 1.0)
    snapshot = view.snapshot()
    view.on_event("epoch", {"epoch": 1, "test_accuracy": 0.9})
    assert snapshot.epochs == [] and view.epochs[-1]["test_accuracy"] == 0.9


def test_train_work_saves_the_run_and_reports_through_one_reporter(runs):
    reporter, events = collecting_reporter()
    result = kinds.work_train(spec("train", {**TWO_EPOCHS}, "kind-run", runs), reporter)
    assert result["status"] == DONE and result["checkpoint"] == "kind-run", result
    names = {name for name, _ in events}
    assert {"stage", "progress", "batch", "epoch"} <= names
    progress = [d for name, d in events if name == "progress"]
    assert progress[-1] == {"done": 10, "total": 10}
    meta = find("kind-run").meta
    assert meta["epochs_done"] == 2 and "partial" not in meta  # the final save replaced the partial one
    json.dumps(result)  # plain values only: it crosses processes


def test_train_work_stops_on_request_keeping_what_was_learned(runs):
    stop = threading.Event()
    reporter = Reporter(lambda name, d: name == "batch" and d["step"] >= 3 and stop.set(), stop)
    result = kinds.work_train(spec("train", {**SMALL, "epochs": 3}, "stopped-run", runs), reporter)
    assert result["status"] == STOPPED and "stopped by request" in result["message"]
    assert result["checkpoint"] == "stopped-run" and result["steps"] <= 4


def test_train_work_fails_with_a_reason_instead_of_raising(runs):
    result = kinds.work_train(spec("train", {**SMALL, "init_checkpoint": "no-such-run"}, "x", runs), Reporter())
    assert result["status"] == "failed" and "no-such-run" in result["message"]


KILLED_SCRIPT = """
import os, sys
from types import SimpleNamespace
from mnist_core.kinds import work_train
from mnist_core.reporter import Reporter
seen = {"epochs": 0}
def on_event(name, data):
    if name == "epoch":
        seen["epochs"] += 1
    if name == "batch" and seen["epochs"] == 1 and data["step"] == 7:
        os._exit(9)  # the worker dies mid-epoch 2, as under kill -9 or the out-of-memory killer
config = dict(arch="mlp", model={"depth": 1, "width": 16}, record=False, train_subset=500, batch_size=100, epochs=3)
work_train(SimpleNamespace(id="k", kind="train", owner="me", config=config, name="killed", overwrite=False,
                           runs_dir=sys.argv[2]), Reporter(on_event))
"""


def test_a_killed_training_worker_leaves_its_last_completed_epoch_loadable_and_marked_partial(
    tmp_path, monkeypatch, data
):
    done = subprocess.run(
        [sys.executable, "-c", KILLED_SCRIPT, str(ROOT), str(tmp_path)], capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 9, done.stderr[-2000:]
    monkeypatch.setenv("MNIST_RUNS_DIR", str(tmp_path))
    info = find("killed")
    assert info.meta["partial"] is True and info.meta["epochs_done"] == 1 and info.meta["steps"] == 5
    model, meta = load("killed")
    assert evaluate(model, data.test)["accuracy"] == meta["history"][0]["test_accuracy"]  # epoch 1's weights


# ---------------------------------------------------------------- the other kinds

TINY_GAN = {"variant": "mlp", "width": 8}
COMPARE = {
    "base": {**SMALL, "max_batches": 4, "batch_size": 64},
    "dimension": "optimizer",
    "values": ["SGD", "Adam"],
    "seeds": [0, 1],
}


def test_each_kind_says_what_an_epoch_is_when_it_refuses_work_over_the_epoch_cap():
    limits = HostLimits(max_epochs=1)
    asks = {
        "compare": {**COMPARE, "base": {**SMALL, "epochs": 2}},
        "gan": {**TINY_GAN, "epochs": 2},
        "transfer": {"arms": ["scratch"], "steps": 1000, "batch_size": 128},  # 128,000 digits: 3 epochs
        "embed": {"method": "tsne", "points": 20_000},
        "scratch": {"net": {"widths": [8]}, "train": {"epochs": 2}},
    }
    for name, config in asks.items():
        with pytest.raises(JobRefused, match=r"at most 1 epochs per run \(MNIST_MAX_EPOCHS; .+\)") as refused:
            kinds.kind(name).prepare(config, limits)
        assert refused.value.limit == "max_epochs" and kinds.kind(name).epoch.split(":")[0] in str(refused.value)


def test_each_kind_names_a_setting_it_does_not_know():
    from mnist_core.compare import CompareError

    for name, config in {
        "gan": {"widht": 8},
        "transfer": {"step": 5},
        "embed": {"point": 1000},
        "scratch": {"net": {"width": [8]}},
        "compare": {**COMPARE, "seed": [1]},
    }.items():
        with pytest.raises(ValueError, match="unknown .*setting"):
            kinds.kind(name).prepare(config, HostLimits())
    with pytest.raises(CompareError, match="unknown optimizer 'Nope'"):
        kinds.kind("compare").prepare({**COMPARE, "values": ["SGD", "Nope"]}, HostLimits())


def test_compare_runs_every_arm_and_seed_and_its_view_holds_each_runs_curves(runs):
    config = kinds.kind("compare").prepare(COMPARE, HostLimits(max_run_seconds=60.0))
    assert kinds.kind("compare").runs(config) == 4 and config["base"]["max_seconds"] == 60.0
    name = kinds.compare_name(config, "cmp-kind", False, runs)
    view = kinds.kind("compare").view(config)
    reporter, events = collecting_reporter()
    result = kinds.work_compare(spec("compare", config, name, runs), reporter)
    assert result["status"] == DONE and result["message"] == "4 of 4 runs finished", result
    assert [(r["arm"], r["seed"]) for r in result["runs"]] == [("SGD", 0), ("SGD", 1), ("Adam", 0), ("Adam", 1)]
    for name_, data in events:
        view.on_event(name_, data)
    snap = view.snapshot()
    assert all(r.job.status == "finished" and r.job.step == 4 and r.job.epochs for r in snap.runs)
    from mnist_core.compare import summary_rows

    rows = summary_rows(snap.runs)
    assert [r["arm"] for r in rows] == ["SGD", "Adam"] and all(r["runs done"] == "2/2" for r in rows)
    assert find("cmp-kind-Adam-s1").meta["comparison"] == {"arm": "Adam", "seed": 1}
    with pytest.raises(ValueError, match="exist already"):  # the same name again would replace them
        kinds.compare_name(config, "cmp-kind", False, runs)
    assert json.dumps([{k: v for k, v in r.items()} for r in result["runs"]])


def test_compare_stop_keeps_the_run_in_flight_and_skips_the_rest(runs):
    config = kinds.kind("compare").prepare({**COMPARE, "base": {**SMALL, "epochs": 3}}, HostLimits())
    stop = threading.Event()
    reporter = Reporter(
        lambda name, d: name == "run" and d["name"] == "batch" and d["data"]["step"] >= 2 and stop.set(), stop
    )
    result = kinds.work_compare(spec("compare", config, "cmp-stop", runs), reporter)
    assert result["status"] == STOPPED
    first, *rest = result["runs"]
    assert first["status"] == "stopped" and first["checkpoint"] == "cmp-stop-SGD-s0"
    assert all(r["status"] == "stopped" and r["message"].startswith("not started") for r in rest)


def test_gan_work_trains_saves_and_its_view_keeps_the_grid(runs):
    from mnist_core import gan

    config = kinds.kind("gan").prepare({**TINY_GAN, "max_batches": 3, "judge": None}, HostLimits())
    name = kinds.gan_name(config, "kind-gan", False, None)
    view = kinds.kind("gan").view(config)
    result = kinds.work_gan(spec("gan", config, name), Reporter(view.on_event))
    assert result["status"] == DONE and result["saved"] == "kind-gan", result
    assert view.step == 3 and view.grid is not None and len(view.epochs) == 1
    assert any(c.name == "kind-gan" for c in gan.list_gans())
    with pytest.raises(ValueError, match="already exists"):
        kinds.gan_name(config, "kind-gan", False, None)


def test_transfer_work_reports_each_arm_and_returns_plain_results(runs):
    config = kinds.kind("transfer").prepare(
        {"arms": ["scratch"], "labels": 100, "steps": 20, "batch_size": 32}, HostLimits(max_epochs=1)
    )
    view = kinds.kind("transfer").view(config)
    result = kinds.work_transfer(spec("transfer", config), Reporter(view.on_event))
    assert result["status"] == DONE and result["message"].startswith("test accuracy: scratch "), result
    (arm,) = result["results"]
    assert arm["arm"] == "scratch" and 0 < arm["test_accuracy"] <= 1
    assert view.results["scratch"].test_accuracy == arm["test_accuracy"] and view.fraction == 1.0


def test_embed_work_saves_the_map_where_the_page_finds_it_and_stops_on_request(runs, mnist):
    from mnist_core import embed

    config = kinds.kind("embed").prepare({"method": "pca", "points": 1000}, HostLimits())
    result = kinds.work_embed(spec("embed", config), Reporter())
    assert result["status"] == DONE and result["coords"].shape == (1000, 2)
    assert result["key"] == embed.cache_key(embed.EmbedSpec(method="pca", points=1000))
    cached = embed.load_cached(result["key"], embed.all_labels(mnist))
    assert cached is not None and (cached.coords == result["coords"]).all()
    stop = threading.Event()
    stop.set()
    stopped = kinds.work_embed(spec("embed", {**config, "seed": 1}), Reporter(stop=stop))
    assert stopped["status"] == STOPPED and "nothing was saved" in stopped["message"]


def test_scratch_work_returns_the_trained_net(runs):
    config = kinds.kind("scratch").prepare(
        {"net": {"widths": [16]}, "train": {"epochs": 1, "max_batches": 30}}, HostLimits()
    )
    view = kinds.kind("scratch").view(config)
    result = kinds.work_scratch(spec("scratch", config), Reporter(view.on_event))
    assert result["status"] == DONE and result["result"].steps == 30
    assert result["result"].test_accuracy > 0.3 and view.epochs and view.fraction == 1.0  # chance is 0.1
    assert result["net"].evaluate  # the trained net itself, usable by the page


def test_on_ray_a_comparison_spreads_its_runs_as_ray_tasks_with_the_same_results_as_locally(runs):
    """The comparison job is a Ray task; its arms x seeds go to the cluster as tasks of their own, and give
    the accuracies the same runs give one after another in this process (same seeds, same data order)."""
    import ray

    from mnist_core.runner import Runner

    config = kinds.kind("compare").prepare(COMPARE, HostLimits())
    local = kinds.work_compare(spec("compare", config, "cmp-local", runs), Reporter())
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        runner = Runner(HostLimits(), backend="ray", runs_dir=runs)
        try:
            job = runner.submit("me", "compare", COMPARE, name="cmp-ray")
            state = runner.wait(job.id, timeout=600)
        finally:
            runner.shutdown()
    finally:
        ray.shutdown()
    assert state.status == DONE, state.message
    on_ray = state.result["runs"]
    assert {r["pid"] for r in on_ray}.isdisjoint({state.pid})  # the runs were tasks of their own, not the job's
    assert [r["test_accuracy"] for r in on_ray] == [r["test_accuracy"] for r in local["runs"]]
    assert all(r.job.status == "finished" and r.job.epochs for r in state.view.runs)  # events came back live
    assert find("cmp-ray-Adam-s1").meta["steps"] == 4
