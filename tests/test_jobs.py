import pytest

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
    assert snap.status == "stopped" and snap.step == 40
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
