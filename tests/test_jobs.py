"""Training jobs on the job runner (the Train page's path): background runs, caps, owners, names, failures."""

import pytest
from saved_runs import save_unloadable_run

from mnist_core.checkpoints import load
from mnist_core.reporter import DONE, FAILED, STOPPED
from mnist_core.runner import HostLimits, JobRefused, Runner

SMALL = {"depth": 1, "width": 32}


def train(**changes) -> dict:
    return {"arch": "mlp", "model": SMALL, **changes}


def long_config(**changes):
    return train(epochs=50, **changes)


@pytest.fixture
def make_runner(runs):
    made = []

    def make(limits=None):
        runner = Runner(limits or HostLimits(), backend="threads", runs_dir=runs)
        made.append(runner)
        return runner

    yield make
    for runner in made:
        runner.shutdown()


def test_a_job_trains_in_the_background_and_saves_its_checkpoint(make_runner):
    runner = make_runner()
    job = runner.submit("alice", "train", train(max_batches=40), "bg run")
    snap = runner.wait(job.id, 60).snapshot()
    assert snap.status == DONE and snap.view.step == 40 and "40-batch cap" in snap.message
    assert len(snap.view.batch_curve) == 40 and snap.view.epochs
    assert snap.result["checkpoint"] == "bg-run" and snap.result["train_status"] == "finished"
    assert load("bg-run")[1]["steps"] == 40


def test_sessions_are_isolated_and_the_global_cap_holds(make_runner):
    runner = make_runner(HostLimits(max_jobs=1))
    job = runner.submit("alice", "train", long_config())
    try:
        with pytest.raises(JobRefused, match="already have a training run"):
            runner.submit("alice", "train", long_config())
        queued = runner.submit("bob", "train", long_config())  # over the global cap: bob waits his turn
        assert queued.status == "queued" and queued.position == 1
        assert runner.latest("bob").id == queued.id and runner.latest("bob", "gan") is None
        assert runner.stop("bob")  # bob can stop his own queued job, never alice's
        assert runner.get(queued.id).status == STOPPED and job.running
    finally:
        assert runner.stop("alice")
        runner.wait(job.id, 30)
    assert job.status == STOPPED
    assert runner.running_count() == 0


def test_host_limits_cap_epochs_and_time(make_runner):
    runner = make_runner(HostLimits(max_epochs=2, max_run_seconds=1.0))
    with pytest.raises(JobRefused, match="at most 2 epochs per run"):
        runner.submit("carol", "train", long_config())
    job = runner.submit("carol", "train", train(epochs=2))
    runner.wait(job.id, 30)
    assert job.status == STOPPED and "time" in job.message and job.result["steps"] > 0


def test_a_failed_run_says_why(make_runner):
    runner = make_runner()
    job = runner.submit("dave", "train", train(optimizer="sgd", lr=1e6))
    runner.wait(job.id, 60)
    assert job.status == FAILED and "learning rate" in job.message


def test_a_job_that_fails_before_training_frees_its_slot_for_everyone(data, runs, make_runner):
    save_unloadable_run(data, runs, "unloadable", SMALL)
    runner = make_runner(HostLimits(max_jobs=1))
    job = runner.submit("alice", "train", train(init_checkpoint="unloadable", max_batches=5), "fine-tune")
    runner.wait(job.id, 60)
    assert job.status == FAILED and job.message and job.stage == "done"
    assert runner.running_count() == 0
    other = runner.submit("bob", "train", train(max_batches=3, record=False))
    assert runner.wait(other.id, 60).status == DONE


def test_names_are_checked_before_training_and_an_existing_run_is_replaced_only_when_asked(make_runner):
    from mnist_core.checkpoints import CheckpointError, CheckpointExistsError

    runner = make_runner()
    quick = train(max_batches=2, record=False)
    for bad in ("...", "best"):
        with pytest.raises(CheckpointError):
            runner.submit("erin", "train", quick, bad)
    assert runner.latest("erin") is None  # nothing trained for a name that could not be saved
    first = runner.submit("erin", "train", quick, "mine")
    assert runner.wait(first.id, 60).result["checkpoint"] == "mine"
    with pytest.raises(CheckpointExistsError, match="exists already"):
        runner.submit("erin", "train", quick, "mine")
    again = runner.submit("erin", "train", quick, "mine", overwrite=True)
    assert runner.wait(again.id, 60).result["checkpoint"] == "mine"


def test_default_names_of_runs_started_in_the_same_second_differ(make_runner):
    runner = make_runner(HostLimits(max_jobs=2))
    quick = train(max_batches=2, record=False)
    a, b = runner.submit("frank", "train", quick), runner.submit("gina", "train", quick)
    runner.wait(a.id, 60), runner.wait(b.id, 60)
    assert a.result["checkpoint"] != b.result["checkpoint"] and a.result["checkpoint"] and b.result["checkpoint"]


def test_limits_are_read_from_the_environment(monkeypatch):
    monkeypatch.setenv("MNIST_MAX_JOBS", "3")
    monkeypatch.setenv("MNIST_MAX_EPOCHS", "10")
    monkeypatch.setenv("MNIST_MAX_RUN_SECONDS", "600")
    assert HostLimits.from_env() == HostLimits(3, 10, 600.0)
