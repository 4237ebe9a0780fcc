"""Bad MNIST_* host settings: the app and the CLI refuse to start with one line naming the variable."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from mnist_core.host import HostSettingError, settings
from mnist_core.runner import HostLimits

ROOT = Path(__file__).resolve().parent.parent
BAD = [
    ("MNIST_MAX_JOBS", "abc", "whole number of at least 1"),
    ("MNIST_MAX_JOBS", "1.5", "whole number of at least 1"),
    ("MNIST_MAX_JOBS", "1e3", "whole number of at least 1"),
    ("MNIST_MAX_JOBS", "0", "whole number of at least 1"),
    ("MNIST_MAX_JOBS", "-2", "whole number of at least 1"),
    ("MNIST_MAX_EPOCHS", "nan", "whole number of at least 1"),
    ("MNIST_MAX_RUN_SECONDS", "nan", "number of seconds above 0"),
    ("MNIST_MAX_RUN_SECONDS", "-5", "number of seconds above 0"),
    ("MNIST_MAX_RUN_SECONDS", "inf", "number of seconds above 0"),
    ("MNIST_OWNER_QUOTA_MB", "0", "number above 0"),
    ("MNIST_OWNER_QUOTA_MB", "lots", "number above 0"),
    ("MNIST_OWNER_IDLE_HOURS", "-1", "number above 0"),
    ("MNIST_HOSTED", "maybe", "takes 1"),
    ("MNIST_DATA_DIR", "/no/such/folder", "does not exist"),
    ("MNIST_RUNS_DIR", __file__, "is a file, not a folder"),
    ("MNIST_DRAWINGS_DIR", __file__, "is a file, not a folder"),
    ("MNIST_CACHE_DIR", __file__, "is a file, not a folder"),
]


@pytest.mark.parametrize("name, value, accepts", BAD)
def test_each_bad_setting_is_named_with_what_it_accepts(name, value, accepts):
    with pytest.raises(HostSettingError) as caught:
        settings({name: value})
    message = str(caught.value)
    assert message.startswith(f"{name}=") and accepts in message and "\n" not in message


def test_good_settings_are_read_and_limits_built_from_them(tmp_path, monkeypatch):
    values = settings(
        {
            "MNIST_MAX_JOBS": "3",
            "MNIST_MAX_EPOCHS": " 10 ",
            "MNIST_MAX_RUN_SECONDS": "1.5e2",
            "MNIST_HOSTED": "1",
            "MNIST_RUNS_DIR": str(tmp_path / "new"),
            "MNIST_DATA_DIR": "",
        }
    )
    assert (values.max_jobs, values.max_epochs, values.max_run_seconds, values.hosted) == (3, 10, 150.0, True)
    assert settings({}) == settings({"MNIST_MAX_JOBS": ""})  # unset and empty mean the default
    monkeypatch.setenv("MNIST_MAX_JOBS", "2")
    assert HostLimits.from_env().max_jobs == 2
    monkeypatch.setenv("MNIST_MAX_JOBS", "abc")
    with pytest.raises(HostSettingError, match="MNIST_MAX_JOBS"):
        HostLimits.from_env()


@pytest.mark.parametrize("name, value", [("MNIST_MAX_JOBS", "abc"), ("MNIST_MAX_RUN_SECONDS", "nan")])
def test_the_cli_refuses_to_start_in_one_line(name, value, tmp_path):
    env = dict(os.environ, **{name: value}, MNIST_RUNS_DIR=str(tmp_path))
    done = subprocess.run(
        [sys.executable, "-m", "mnist_core", "list"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and name in lines[0] and "Traceback" not in done.stderr, done.stderr


@pytest.mark.parametrize("page", ["pages/3_Train.py", "pages/9_Compare.py"])
def test_the_app_shows_one_error_and_stops(page, monkeypatch, runs):
    monkeypatch.setenv("MNIST_MAX_JOBS", "1e3")
    at = AppTest.from_file(str(ROOT / page), default_timeout=120).run()
    assert not at.exception
    assert [e.value for e in at.error] == [at.error[0].value] and "MNIST_MAX_JOBS" in at.error[0].value
    assert "whole number" in at.error[0].value
