"""The job runner's contract, run against every backend: threads, a pool of worker processes, a local Ray.

Real kinds (mnist_core.kinds), real MNIST, tiny runs. Ray is started once for the module by the test
itself (ray.init(num_cpus=2)), so no cluster is needed.
"""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from mnist_core.reporter import DONE, FAILED, QUEUED, RUNNING, STOPPED
from mnist_core.runner import HostLimits, JobRefused, Runner

ROOT = Path(__file__).resolve().parent.parent
BACKENDS = ["threads", "processes", "ray"]
SMALL = {"arch": "mlp", "model": {"depth": 1, "width": 32}}
TINY = {**SMALL, "max_batches": 30}  # a few seconds, scored and saved
LONG = {**SMALL, "epochs": 20}  # runs until stopped
GAN = {"variant": "mlp", "width": 8, "max_batches": 5, "judge": None}


@pytest.fixture(scope="module")
def local_ray():
    import ray  # requirements-dev.txt pins it: a missing Ray fails these tests, it does not skip them

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


@pytest.fixture
def make_runner(request, runs):
    """Runners on the parametrised backend, shut down after the test."""
    made = []

    def make(**limits) -> Runner:
        if request.param == "ray":
            request.getfixturevalue("local_ray")
        runner = Runner(HostLimits(**limits), backend=request.param, workers=limits.get("max_jobs", 1))
        made.append(runner)
        return runner

    yield make
    for runner in made:
        runner.shutdown()


def until(condition, timeout=90.0, what="the condition"):
    deadline = time.time() + timeout
    while not condition():
        assert time.time() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def learning(job) -> bool:
    """The job has trained at least one batch (so a stop keeps something)."""
    return job.ended or bool(job.snapshot().view.batch_curve)


def ended(runner, job, timeout=90.0):
    state = runner.wait(job.id, timeout)
    assert state.ended, f"job {job.id} still {state.status} after {timeout} s ({state.stage})"
    return state.snapshot()


@pytest.mark.parametrize("make_runner", BACKENDS, indirect=True)
def test_events_queue_order_owner_isolation_and_a_stop_that_keeps_the_checkpoint(make_runner, runs):
    runner = make_runner(max_jobs=1)
    first = runner.submit("alice", "train", LONG, name="alice long")
    assert first.status == RUNNING and first.position is None and runner.running_count() == 1
    until(lambda: learning(first), what="alice's first batch")
    # The cap holds across kinds: bob's GAN waits behind alice's training run.
    second = runner.submit("bob", "gan", GAN, name="bob-gan")
    third = runner.submit("carol", "train", TINY, name="carol tiny")
    fourth = runner.submit("dave", "train", TINY, name="dave tiny")
    assert (second.status, second.position, third.position, fourth.position) == (QUEUED, 1, 2, 3)
    assert first.status == RUNNING and runner.running_count() == 1

    # One live job per visitor, whatever its kind and state; another visitor's job is never returned or stopped.
    with pytest.raises(JobRefused, match="you already have a GAN waiting to start .*GAN page"):
        runner.submit("bob", "train", TINY)
    assert runner.latest("bob") is second and runner.live("bob") is second and runner.live("erin") is None
    assert runner.latest("bob", "train") is None and runner.latest("erin") is None and runner.stop("erin") is False
    assert runner.stop(third.id) and third.status == STOPPED and third.message == "stopped before it started"
    assert fourth.position == 2 and second.position == 1

    assert runner.stop("alice")  # by owner: her live job
    stopped = ended(runner, first)
    assert stopped.status == STOPPED and stopped.result["steps"] > 0
    assert (runs / f"{stopped.result['checkpoint']}.json").exists()  # what it learned is kept
    done_second, done_fourth = ended(runner, second), ended(runner, fourth)
    assert done_second.status == done_fourth.status == DONE and "30-batch cap" in done_fourth.message
    assert [p["step"] for p in done_fourth.view.batch_curve] == list(range(1, 31))  # every event, in order
    assert done_fourth.view.epochs and done_fourth.stage == "done"
    assert done_fourth.result["checkpoint"] == "dave-tiny" and (runs / "dave-tiny.json").exists()
    assert (done_fourth.pid == os.getpid()) == (runner.backend == "threads")  # out of the server unless threads
    assert first.finished <= done_second.started <= done_second.finished <= done_fourth.started  # FIFO, one at a time
    assert runner.running_count() == 0 and runner.stop(first.id) is False


@pytest.mark.parametrize("make_runner", ["processes", "ray"], indirect=True)
def test_a_worker_killed_mid_run_fails_its_job_plainly_and_the_next_job_runs(make_runner, runs):
    runner = make_runner(max_jobs=1)
    doomed = runner.submit("alice", "train", LONG)
    queued = runner.submit("bob", "train", TINY, name="after the kill")
    until(lambda: learning(doomed), what="the first batch")
    assert doomed.pid != os.getpid()
    os.kill(doomed.pid, signal.SIGKILL)
    state = ended(runner, doomed)
    assert state.status == FAILED and "ended unexpectedly (killed, or out of memory)" in state.message
    assert "Traceback" not in state.message
    after = ended(runner, queued)
    assert after.status == DONE and after.pid != doomed.pid and after.result["checkpoint"] == "after-the-kill"
    assert runner.running_count() == 0 and runner.live("alice") is None


def test_the_worker_pool_starts_a_worker_only_when_a_job_needs_one_and_keeps_it_warm(runs):
    runner = Runner(HostLimits(max_jobs=2), backend="processes", workers=2)
    try:
        assert runner.worker_pids() == []  # an idle server holds no torch-loaded worker
        first = ended(runner, runner.submit("alice", "train", TINY, name="first"))
        assert first.status == DONE and runner.worker_pids() == [first.pid]
        second = ended(runner, runner.submit("alice", "train", TINY, name="second"))
        assert second.status == DONE and second.pid == first.pid  # the warm worker takes the next job
    finally:
        runner.shutdown()


@pytest.mark.parametrize("make_runner", BACKENDS, indirect=True)
def test_the_runner_stops_a_job_at_the_hosts_time_limit_and_says_so(make_runner, runs):
    runner = make_runner(max_run_seconds=4.0)
    job = runner.submit("alice", "train", LONG)
    state = ended(runner, job)
    assert state.status == STOPPED and "MNIST_MAX_RUN_SECONDS" in state.message and "4 s" in state.message
    assert 4.0 <= state.seconds < 30


def test_refusals_name_the_limit_and_leave_nothing_behind(runs):
    runner = Runner(HostLimits(max_jobs=1, max_epochs=2, max_queued=1, max_compare_runs=4), backend="threads")
    try:
        with pytest.raises(JobRefused, match=r"at most 2 epochs per run \(MNIST_MAX_EPOCHS"):
            runner.submit("alice", "train", {**SMALL, "epochs": 3})
        sweep = {"base": SMALL, "dimension": "optimizer", "values": ["SGD", "Adam"], "seeds": [0, 1, 2]}
        with pytest.raises(
            JobRefused,
            match=r"at most 4 training runs in one comparison \(MNIST_MAX_COMPARE_RUNS\); "
            "this one asks for 6",
        ) as caught:
            runner.submit("alice", "compare", sweep)
        assert caught.value.limit == "max_compare_runs"
        with pytest.raises(ValueError, match="unknown job kind 'juggle'"):
            runner.submit("alice", "juggle", {})
        assert runner.latest("alice") is None
        first = runner.submit("alice", "train", {**SMALL, "epochs": 2})
        runner.submit("bob", "train", TINY)
        with pytest.raises(JobRefused, match=r"1 are waiting already.*MNIST_MAX_QUEUED") as caught:
            runner.submit("carol", "train", TINY)
        assert caught.value.limit == "max_queued" and runner.latest("carol") is None
        runner.stop(first.id)
    finally:
        runner.shutdown()


def test_an_unreachable_ray_address_fails_within_ten_seconds_with_one_message():
    # In a fresh interpreter: this module's own Ray must not answer for the address under test.
    # One address refuses connections; the other accepts them but is not Ray (ray.init alone would hang).
    script = r"""
import socket, sys, time
from mnist_core.runner import Runner, HostLimits, RunnerError
closed = socket.socket(); closed.bind(("127.0.0.1", 0)); port = closed.getsockname()[1]; closed.close()
mute = socket.socket(); mute.bind(("127.0.0.1", 0)); mute.listen(); mute_port = mute.getsockname()[1]
for address in (f"127.0.0.1:{port}", f"127.0.0.1:{mute_port}"):
    start = time.time()
    try:
        Runner(HostLimits(), backend="ray", ray_address=address)
    except RunnerError as exc:
        print(f"{time.time() - start:.1f}|{exc}")
"""
    done = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=90)
    lines = [line for line in done.stdout.splitlines() if "|" in line]
    assert len(lines) == 2, done.stdout + done.stderr
    for line in lines:
        seconds, message = line.split("|", 1)
        assert float(seconds) <= 11 and "Ray cluster at '127.0.0.1:" in message and "MNIST_RAY_ADDRESS" in message
    assert "ray start --head" in lines[0] and "within 10 s" in lines[1]


def test_pool_workers_do_not_run_the_servers_main_script(tmp_path):
    # Under `streamlit run`, __main__ is the app script itself; a worker that re-ran it would run the app
    # (and die). A script with top-level code stands in for it: only the server may run that code.
    marker, script = tmp_path / "ran", tmp_path / "server.py"
    script.write_text(f"""
import os, sys
with open({str(marker)!r}, "a") as out:
    out.write(f"{{os.getpid()}}\\n")
from mnist_core.runner import HostLimits, Runner
runner = Runner(HostLimits(), backend="processes", workers=1, runs_dir={str(tmp_path / "runs")!r})
job = runner.submit("me", "train", {{"arch": "mlp", "model": {{"depth": 1, "width": 8}}, "max_batches": 1,
                                   "record": False}})
print(runner.wait(job.id, 120).status, job.message)
runner.shutdown()
""")
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=180)
    assert done.stdout.startswith("done"), done.stdout + done.stderr[-2000:]
    assert len(marker.read_text().split()) == 1  # the server's own run of it, no worker's
