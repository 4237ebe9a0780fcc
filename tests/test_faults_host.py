"""Fault suite, host settings: a bad MNIST_* value stops the CLI at start with one line naming the
variable (exit 2), before anything is read or trained, and nothing saved earlier is touched."""

import pytest

from mnist_core import __main__ as cli
from mnist_core import host


@pytest.mark.parametrize(
    "variable, value",
    [
        ("MNIST_MAX_JOBS", "abc"),
        ("MNIST_MAX_JOBS", "1.5"),
        ("MNIST_MAX_JOBS", "1e3"),
        ("MNIST_MAX_JOBS", "0"),
        ("MNIST_MAX_JOBS", "-2"),
        ("MNIST_MAX_JOBS", "nan"),
        ("MNIST_MAX_EPOCHS", "many"),
        ("MNIST_MAX_EPOCHS", "0"),
        ("MNIST_MAX_RUN_SECONDS", "nan"),
        ("MNIST_MAX_RUN_SECONDS", "-1"),
        ("MNIST_MAX_RUN_SECONDS", "soon"),
        ("MNIST_HOSTED", "maybe"),
        ("MNIST_DATA_DIR", "/nonexistent/mnist"),
    ],
)
@pytest.mark.parametrize("argv", [["list"], ["presets"], ["train", "--max-batches", "1", "--quiet"]])
def test_a_bad_host_setting_stops_every_command_in_one_line(runs, monkeypatch, capsys, variable, value, argv):
    runs.mkdir(parents=True)
    (runs / "earlier.json").write_text("{}")
    monkeypatch.setenv(variable, value)
    assert host.problem() is not None
    assert cli.main(argv) == 2
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("python -m mnist_core: error: ") and variable in lines[0], (
        captured.err
    )
    assert captured.out == ""  # nothing listed, nothing trained
    assert sorted(p.name for p in runs.iterdir()) == ["earlier.json"]
    assert (runs / "earlier.json").read_text() == "{}"
