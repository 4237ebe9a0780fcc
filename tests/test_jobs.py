import pytest

from saved_runs import save_unloadable_run
from mnist_core.checkpoints import load
from mnist_core.jobs import HostLimits, JobLimitError, JobManager
from mnist_core.train import TrainConfig

SMALL = {"depth": 1, "width": 32}


def long_config(**changes):
    return TrainConfig(arch="mlp", model=SMALL, epochs=50, **changes)


def test_a_job_trains_in_the_background_and_saves_its_checkpoint(data, runs):
    manager = JobManager(HostLimits())
    job = manager.start("alice", TrainConfig(arch="mlp", model=SMALL, max_batches=40), data, "bg run")
    assert manager.wait(job, 60)
    snap = job.snapshot()
    assert snap.status == "finished" and snap.step == 40 and "40-batch cap" in snap.message
    assert len(snap.batch_curve) == 40 and snap.epochs
    assert snap.checkpoint == "bg-run"
    assert load("bg-run")[1]["steps"] == 40


def test_sessions_are_isolated_and_the_global_cap_holds(data, runs):
    manager = JobManager(HostLimits(max_jobs=1))
    job = manager.start("alice", long_config(), data)
    try:
        with pytest.raises(JobLimitError, match="already have a training run going"):
            manager.start("alice", long_config(), data)
        with pytest.raises(JobLimitError, match="at most 1 training job"):
            manager.start("bob", long_config(), data)
        assert manager.latest("bob") is None
        assert manager.stop("bob") is False  # bob cannot stop alice's job
        assert job.running
    finally:
        assert manager.stop("alice")
        assert manager.wait(job, 30)
    assert job.status == "stopped"
    assert manager.running_count() == 0


def test_host_limits_cap_epochs_and_time(data, runs):
    manager = JobManager(HostLimits(max_epochs=2, max_run_seconds=1.0))
    with pytest.raises(JobLimitError, match="at most 2 epochs per run"):
        manager.start("carol", long_config(), data)
    job = manager.start("carol", TrainConfig(arch="mlp", model=SMALL, epochs=2), data)
    assert manager.wait(job, 30)
    assert job.status == "stopped" and "time cap" in job.message


def test_limits_are_read_from_the_environment(monkeypatch):
    monkeypatch.setenv("MNIST_MAX_JOBS", "3")
    monkeypatch.setenv("MNIST_MAX_EPOCHS", "10")
    monkeypatch.setenv("MNIST_MAX_RUN_SECONDS", "600")
    assert HostLimits.from_env() == HostLimits(3, 10, 600.0)


def test_a_failed_run_says_why(data, runs):
    manager = JobManager(HostLimits())
    job = manager.start("dave", TrainConfig(arch="mlp", model=SMALL, optimizer="sgd", lr=1e6), data)
    assert manager.wait(job, 60)
    assert job.status == "failed" and "learning rate" in job.message


def test_a_job_that_fails_before_training_frees_its_slot_for_everyone(data, runs):
    save_unloadable_run(data, runs, "unloadable", SMALL)
    manager = JobManager(HostLimits(max_jobs=1))
    job = manager.start("alice", TrainConfig(arch="mlp", model=SMALL, init_checkpoint="unloadable", max_batches=5),
                        data, "fine-tune")
    assert manager.wait(job, 60)
    assert job.status == "failed" and job.message and job.stage == "done"
    assert manager.running_count() == 0
    other = manager.start("bob", TrainConfig(arch="mlp", model=SMALL, max_batches=3, record=False), data)
    assert manager.wait(other, 60) and other.status == "finished"


def test_names_are_checked_before_training_and_an_existing_run_is_replaced_only_when_asked(data, runs):
    from mnist_core.checkpoints import CheckpointError, CheckpointExistsError

    manager = JobManager(HostLimits())
    quick = TrainConfig(arch="mlp", model=SMALL, max_batches=2, record=False)
    for bad in ("...", "best"):
        with pytest.raises(CheckpointError):
            manager.start("erin", quick, data, bad)
    assert manager.latest("erin") is None  # nothing trained for a name that could not be saved
    first = manager.start("erin", quick, data, "mine")
    assert manager.wait(first, 60) and first.checkpoint == "mine"
    with pytest.raises(CheckpointExistsError, match="exists already"):
        manager.start("erin", quick, data, "mine")
    again = manager.start("erin", quick, data, "mine", overwrite=True)
    assert manager.wait(again, 60) and again.checkpoint == "mine"


def test_default_names_of_runs_started_in_the_same_second_differ(data, runs):
    manager = JobManager(HostLimits(max_jobs=2))
    quick = TrainConfig(arch="mlp", model=SMALL, max_batches=2, record=False)
    a, b = manager.start("frank", quick, data), manager.start("gina", quick, data)
    assert manager.wait(a, 60) and manager.wait(b, 60)
    assert a.checkpoint != b.checkpoint and a.checkpoint and b.checkpoint


def test_the_eta_follows_a_smoothed_step_rate_not_every_busy_second():
    from mnist_core.jobs import Job

    job = Job("j", "me", "eta", TrainConfig(), total_steps=1000)
    elapsed, step = 0.0, 0
    for second in range(20):  # 10 steps a second, then one second where a page stole the CPU
        rate = 1 if second == 15 else 10
        for _ in range(rate):
            step += 1
            elapsed += 1.0 / rate
            job.on_event("batch", {"step": step, "epoch": 1, "loss": 1.0, "accuracy": 0.5,
                                   "images_per_s": 0.0, "elapsed": elapsed})
    raw_eta_at_stall = (1000 - step) / 1.0
    assert job.eta_seconds < 0.5 * raw_eta_at_stall
    assert 60 < job.eta_seconds < 150  # about (1000 - 191) / 10 steps a second
