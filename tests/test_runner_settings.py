"""The job runner's host settings: MNIST_BACKEND, MNIST_WORKERS, MNIST_RAY_ADDRESS, MNIST_MAX_COMPARE_RUNS,
MNIST_MAX_QUEUED, read and checked once with the others (a bad value names the variable and what it accepts)."""

import pytest

from mnist_core.host import HostSettingError, problem, settings
from mnist_core.runner import HostLimits, Runner

BAD = [
    ("MNIST_BACKEND", "gpu", "takes processes"),
    ("MNIST_BACKEND", "thread", "threads"),
    ("MNIST_WORKERS", "0", "whole number of at least 1"),
    ("MNIST_WORKERS", "two", "whole number of at least 1"),
    ("MNIST_RAY_ADDRESS", "localhost", "host:port"),
    ("MNIST_RAY_ADDRESS", "10.0.0.1:port", "host:port"),
    ("MNIST_RAY_ADDRESS", "10.0.0.1:70000", "host:port"),
    ("MNIST_MAX_COMPARE_RUNS", "-1", "whole number of at least 1"),
    ("MNIST_MAX_QUEUED", "1.5", "whole number of at least 1"),
]


@pytest.mark.parametrize("name, value, accepts", BAD)
def test_each_bad_runner_setting_is_named_with_what_it_accepts(name, value, accepts):
    with pytest.raises(HostSettingError) as caught:
        settings({name: value})
    message = str(caught.value)
    assert message.startswith(f"{name}=") and accepts in message and "\n" not in message
    assert problem({name: value}) == message


def test_runner_settings_have_defaults_and_are_read():
    default = settings({})
    assert (default.backend, default.workers, default.ray_address) == ("processes", None, None)
    assert (default.max_compare_runs, default.max_queued) == (40, 20)
    values = settings(
        {
            "MNIST_BACKEND": " Threads ",
            "MNIST_WORKERS": "3",
            "MNIST_RAY_ADDRESS": "10.0.0.5:6379",
            "MNIST_MAX_COMPARE_RUNS": "12",
            "MNIST_MAX_QUEUED": "4",
        }
    )
    assert (values.backend, values.workers, values.ray_address) == ("threads", 3, "10.0.0.5:6379")
    assert (values.max_compare_runs, values.max_queued) == (12, 4)
    assert settings({"MNIST_RAY_ADDRESS": "auto"}).ray_address == "auto"
    assert settings({"MNIST_RAY_ADDRESS": "ray://head:10001"}).ray_address == "ray://head:10001"


def test_limits_and_the_backend_come_from_the_environment(monkeypatch):
    monkeypatch.setenv("MNIST_MAX_JOBS", "2")
    monkeypatch.setenv("MNIST_MAX_COMPARE_RUNS", "8")
    monkeypatch.setenv("MNIST_MAX_QUEUED", "3")
    assert HostLimits.from_env() == HostLimits(max_jobs=2, max_compare_runs=8, max_queued=3)
    monkeypatch.setenv("MNIST_BACKEND", "threads")
    runner = Runner()
    try:
        assert runner.backend == "threads" and runner.limits.max_queued == 3
    finally:
        runner.shutdown()
    monkeypatch.setenv("MNIST_BACKEND", "cluster")
    with pytest.raises(HostSettingError, match="MNIST_BACKEND"):
        Runner()
