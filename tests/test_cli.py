import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def cli(*args, env_extra=None):
    env = dict(os.environ, PYTHONWARNINGS="ignore", **(env_extra or {}))
    return subprocess.run(
        [sys.executable, "-m", "mnist_core", *args], cwd=ROOT, capture_output=True, text=True, timeout=300, env=env
    )


@pytest.mark.parametrize(
    "args, message",
    [
        (["train", "--arch", "resnet"], "invalid choice: 'resnet'"),
        (["train", "--lr", "-1"], "learning rate must be a positive number"),
        (["train", "--epochs", "many"], "invalid int value"),
        (["train", "--set", "width"], "--set takes KEY=VALUE"),
        (["train", "--arch", "mlp", "--set", "depth=two"], "--set depth"),
        (["train", "--batch-size", "100000"], "larger than the 60000 training images"),
        (["eval", "no-such-model"], "no checkpoint named 'no-such-model'"),
        (["train", "--data", "/nonexistent"], "no such folder"),
        (["train", "--seed", "99999999999999999999999"], "seed must be a whole number from 0 to 4294967295"),
        (["train", "--seed", "-1"], "seed must be a whole number from 0"),
        (["train", "--device", "foo"], "device 'foo' is not a device name"),
        (["train", "--out", "README.md"], "--out README.md is a file, not a folder"),
        (["train", "--out", "/proc/self"], "--out /proc/self: cannot save there"),
        (["train", "--name", "..."], "has no usable characters"),
        (["train", "--name", "best"], "name of a shipped checkpoint"),
        (["train", "--arch", "cnn", "--set", "channels=8,8,8,8,8"], "channels: 5 blocks halve"),
        (["train", "--arch", "mlp", "--set", "dropout=nan"], "dropout must be between 0 and 0.9 (got nan)"),
        (["bogus"], "(see python -m mnist_core --help)"),
        (["train", "--epochs", "x"], "(see python -m mnist_core train --help)"),
    ],
)
def test_bad_options_exit_nonzero_with_one_clear_line(args, message):
    done = cli(*args)
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert message in lines[0]
    assert "mnist_core mnist_core" not in lines[0]


def test_dry_run_trains_a_few_batches_and_saves_nothing(tmp_path):
    done = cli("train", "--preset", "fast", "--dry-run", "--quiet", env_extra={"MNIST_RUNS_DIR": str(tmp_path)})
    assert done.returncode == 0, done.stderr
    assert "finished: 5 steps" in done.stdout and "nothing saved" in done.stdout  # a dry run does all it was asked
    assert not any(tmp_path.iterdir())


def test_train_then_list_then_eval(tmp_path):
    env = {"MNIST_RUNS_DIR": str(tmp_path)}
    done = cli(
        "train", "--arch", "mlp", "--set", "width=64", "--max-batches", "50", "--name", "cli test", env_extra=env
    )
    assert done.returncode == 0, done.stderr
    assert "saved checkpoint 'cli-test'" in done.stdout
    assert "epoch 1" in done.stderr  # the progress line
    meta = json.loads((tmp_path / "cli-test.json").read_text())
    assert meta["model_config"] == {"width": 64}
    listing = cli("list", env_extra=env)
    assert "cli-test" in listing.stdout and "runs" in listing.stdout
    evaluated = cli("eval", "cli-test", env_extra=env)
    assert evaluated.returncode == 0
    assert f"test accuracy {meta['test_accuracy']:.2%}" in evaluated.stdout


def test_an_existing_name_needs_overwrite_before_training(tmp_path):
    env = {"MNIST_RUNS_DIR": str(tmp_path)}
    (tmp_path / "taken.json").write_text("{}")
    done = cli("train", "--name", "taken", "--max-batches", "1", env_extra=env)
    assert done.returncode == 2 and "already exists" in done.stderr and "--overwrite" in done.stderr
    assert "steps in" not in done.stdout  # refused before training
    assert (tmp_path / "taken.json").read_text() == "{}"


def test_progress_writes_no_carriage_returns_to_a_pipe(tmp_path):
    done = cli(
        "train",
        "--arch",
        "mlp",
        "--set",
        "width=16",
        "--max-batches",
        "30",
        "--name",
        "piped",
        env_extra={"MNIST_RUNS_DIR": str(tmp_path)},
    )
    assert done.returncode == 0, done.stderr
    assert "\r" not in done.stderr and "epoch 1: train loss" in done.stderr


def test_list_shows_an_unreadable_checkpoint_without_its_claimed_accuracy(tmp_path):
    (tmp_path / "liar.json").write_text(json.dumps({"arch": "mlp", "test_accuracy": "high"}))
    (tmp_path / "liar.safetensors").write_bytes(b"")
    (tmp_path / "boast.json").write_text(json.dumps({"arch": "mlp", "test_accuracy": 0.9999}))  # no weights
    done = cli("list", env_extra={"MNIST_RUNS_DIR": str(tmp_path)})
    assert done.returncode == 0, done.stderr
    liar = next(line for line in done.stdout.splitlines() if line.startswith("liar"))
    assert "unreadable" in liar and "test_accuracy" in liar
    boast = next(line for line in done.stdout.splitlines() if line.startswith("boast"))
    assert "unreadable" in boast and "99.99%" not in boast and "missing" in boast
    assert "best" in done.stdout  # the shipped ones are still listed


def test_a_save_that_fails_after_training_goes_to_a_fallback_folder(tmp_path, monkeypatch, capsys):
    from mnist_core import __main__ as cli_main

    monkeypatch.setenv("MNIST_RUNS_DIR", str(tmp_path / "runs"))
    out = tmp_path / "out"
    real_save = cli_main.save

    def failing_save(result, name, directory=None, extra=None, **kw):
        if Path(directory) == out:
            raise OSError(28, "No space left on device")
        return real_save(result, name, directory, extra, **kw)

    monkeypatch.setattr(cli_main, "save", failing_save)
    code = cli_main.main(
        [
            "train",
            "--arch",
            "mlp",
            "--set",
            "width=16",
            "--max-batches",
            "3",
            "--quiet",
            "--name",
            "precious",
            "--out",
            str(out),
        ]
    )
    err = capsys.readouterr().err
    assert code == 1
    assert "could not save 'precious'" in err and "No space left on device" in err and "instead" in err
    saved = list((tmp_path / "runs").glob("precious-*.json"))
    assert len(saved) == 1 and json.loads(saved[0].read_text())["steps"] == 3


# ---------------------------------------------------------------- the job commands (run through the job runner)

SMALL_COMPARE = ["compare", "--arch", "mlp", "--train-subset", "500", "--batch-size", "100", "--epochs", "1"]


@pytest.mark.parametrize(
    "args, message",
    [
        (["compare", "--values", "SGD,Nope"], "unknown optimizer 'Nope'"),
        (["compare", "--seeds", "one,two"], "expected a comma-separated list of int"),
        (["compare", "--vary", "colour"], "invalid choice: 'colour'"),
        (["compare", "--vary", "bn", "--arch", "mlp"], "BatchNorm position can be varied for the cnn architecture"),
        (["compare", "--seeds", "1,1"], "the seeds must differ"),
        (["compare", "--name", "best"], "name of a shipped checkpoint"),
        (["compare", "--backend", "cloud"], "invalid choice: 'cloud'"),
        (["transfer", "--arms", "frozen,nope"], "unknown arm"),
        (["transfer", "--steps", "0"], "steps must be between 1 and 100,000"),
        (["embed", "--points", "5"], "subset size must be between 1,000 and 70,000"),
        (["embed", "--method", "tsne", "--dims", "3"], "3-D maps are offered for PCA only"),
        (["embed", "--source", "no-such-run"], "no checkpoint named 'no-such-run'"),
        (["gan", "--epochs", "0"], "epochs"),
    ],
)
def test_job_commands_refuse_bad_options_in_one_line(args, message):
    done = cli(*args)
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], done.stderr


def test_job_commands_apply_the_hosts_epoch_cap_naming_it():
    done = cli(*SMALL_COMPARE, "--epochs", "3", "--values", "SGD,Adam", env_extra={"MNIST_MAX_EPOCHS": "2"})
    assert done.returncode == 2 and "at most 2 epochs per run (MNIST_MAX_EPOCHS" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1


def test_compare_command_trains_each_arm_and_seed_in_a_worker_process_and_saves_them(tmp_path):
    done = cli(
        *SMALL_COMPARE,
        "--values",
        "SGD,Adam",
        "--seeds",
        "0,1",
        "--max-batches",
        "3",
        "--name",
        "sweep",
        env_extra={"MNIST_RUNS_DIR": str(tmp_path)},
    )
    assert done.returncode == 0, done.stderr
    assert "done: 4 of 4 runs finished" in done.stdout and "local backend" in done.stdout
    for arm in ("SGD", "Adam"):
        assert f"{arm}: test accuracy" in done.stdout and "over 2 seed(s)" in done.stdout
        for seed in (0, 1):
            meta = json.loads((tmp_path / f"sweep-{arm}-s{seed}.json").read_text())
            assert meta["steps"] == 3 and meta["comparison"] == {"arm": arm, "seed": seed}
    assert "run 4: finished" in done.stderr and "\r" not in done.stderr  # one line per run, no bar in a pipe
    again = cli(
        *SMALL_COMPARE,
        "--values",
        "SGD,Adam",
        "--seeds",
        "0,1",
        "--name",
        "sweep",
        env_extra={"MNIST_RUNS_DIR": str(tmp_path)},
    )
    assert again.returncode == 2 and "exist already" in again.stderr  # refused before any run


def test_gan_transfer_and_embed_commands_run_their_jobs_to_the_end(tmp_path):
    env = {"MNIST_RUNS_DIR": str(tmp_path)}
    gan = cli(
        "gan",
        "--variant",
        "mlp",
        "--width",
        "8",
        "--max-batches",
        "3",
        "--no-judge",
        "--name",
        "g",
        "--backend",
        "threads",
        env_extra=env,
    )
    assert gan.returncode == 0, gan.stderr
    assert "saved GAN 'g'" in gan.stdout and (tmp_path / "gans" / "g.json").exists()
    transfer = cli(
        "transfer",
        "--arms",
        "scratch",
        "--labels",
        "100",
        "--steps",
        "10",
        "--batch-size",
        "32",
        "--backend",
        "threads",
        env_extra=env,
    )
    assert transfer.returncode == 0, transfer.stderr
    assert "from scratch" in transfer.stdout and "done: test accuracy: scratch" in transfer.stdout
    embed = cli("embed", "--method", "pca", "--points", "1000", env_extra=env)  # a worker process
    assert embed.returncode == 0, embed.stderr
    saved = tmp_path / "embeddings" / embed.stdout.split("/embeddings/")[1].split()[0]
    assert saved.exists() and saved.with_suffix(".json").exists()
