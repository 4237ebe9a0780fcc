"""app.py's navigation (Home + every file in pages/) and its one guard for a page's unexpected errors."""

import logging
import re
import subprocess
import sys
from pathlib import Path

import pytest
from streamlit import config
from streamlit.testing.v1 import AppTest

from labui import errors
from labui.navigation import page_files, page_label
from mnist_core.host import hosted

ROOT = Path(__file__).resolve().parent.parent
SECRET = "/srv/mnist/secret-path/data.idx"


def app(entry: str = "app.py") -> AppTest:
    return AppTest.from_file(str(ROOT / entry), default_timeout=120)


@pytest.fixture
def restore_error_details():
    before = config.get_option("client.showErrorDetails")
    yield
    config.set_option("client.showErrorDetails", before)


@pytest.fixture
def log_lines():
    lines: list[str] = []

    class Collect(logging.Handler):
        def emit(self, record):
            lines.append(record.getMessage())

    handler = Collect()
    errors.log.addHandler(handler)
    yield lines
    errors.log.removeHandler(handler)


def test_every_file_in_pages_is_in_the_navigation_and_on_the_home_page(runs):
    files = page_files()
    assert [p.name for p in files] == sorted(
        (p.name for p in (ROOT / "pages").glob("*.py")), key=lambda n: (int(n.split("_")[0]), n)
    )
    at = app().run()
    assert not at.exception, [e.message for e in at.exception]
    links = at.get("page_link")
    assert [link.proto.label for link in links] == [f"**{page_label(p)}**" for p in files]
    assert [link.proto.page for link in links] == [p.stem.split("_", 1)[1] for p in files]  # the URL path
    for path in files:  # each file is a registered page of app.py's navigation
        at.switch_page(f"pages/{path.name}").run()
        assert not at.exception, (path.name, [e.message for e in at.exception])
        assert not any(e.value == errors.MESSAGE for e in at.error), path.name  # the guard caught nothing


def test_page_label_matches_streamlits_file_name_rule():
    assert page_label(Path("4_Under_the_hood.py")) == "Under the hood"
    assert page_label(Path("2_Embeddings.py")) == "Embeddings"


def break_the_data_page(monkeypatch):
    from mnist_core import explore

    def broken(*_args, **_kwargs):
        raise OSError(f"read failed: {SECRET}\nsecond line")

    monkeypatch.setattr(explore, "split_arrays", broken)


def texts(at: AppTest) -> str:
    return " ".join(str(e.proto) for e in at.main)


def test_hosted_a_failing_page_shows_a_plain_message_no_traceback_and_logs_one_line(
    runs, monkeypatch, restore_error_details, log_lines
):
    monkeypatch.setenv("MNIST_HOSTED", "1")
    break_the_data_page(monkeypatch)
    at = app().run()
    at.switch_page("pages/1_Data.py").run()
    assert any(errors.MESSAGE == e.value for e in at.error)
    assert not at.exception and not at.expander
    assert SECRET not in texts(at) and "Traceback" not in texts(at) and ".py" not in texts(at)
    assert config.get_option("client.showErrorDetails") == "none"  # what still escapes shows no details either
    assert len(log_lines) == 1 and "\n" not in log_lines[0]
    assert log_lines[0].startswith("page=Data error=OSError: read failed: " + SECRET)


def test_locally_a_failing_page_shows_the_plain_message_and_the_traceback_folded(
    runs, monkeypatch, restore_error_details, log_lines
):
    monkeypatch.delenv("MNIST_HOSTED", raising=False)
    break_the_data_page(monkeypatch)
    at = app().run()
    at.switch_page("pages/1_Data.py").run()
    assert any(errors.MESSAGE == e.value for e in at.error)
    (details,) = at.expander
    assert not details.proto.expanded
    assert any(SECRET in e.message for e in details.exception)
    assert config.get_option("client.showErrorDetails") == "full"
    assert len(log_lines) == 1


def test_stop_and_rerun_pass_through_the_guard(runs, restore_error_details):
    at = app().run()
    at.switch_page("pages/2_Embeddings.py").run()
    at.selectbox(key="emb.method").set_value("tsne").run()
    at.number_input(key="emb.points").set_value(1000).run()
    at.number_input(key="emb.perplexity").set_value(400.0).run()  # the page's own st.error, then st.stop()
    assert any("perplexity 400 is too large" in e.value for e in at.error)
    assert not any(errors.MESSAGE == e.value for e in at.error)
    assert not at.exception


@pytest.mark.parametrize("value, expected", [("1", True), ("true", True), ("0", False), ("", False)])
def test_hosted_reads_mnist_hosted(monkeypatch, value, expected):
    monkeypatch.setenv("MNIST_HOSTED", value)
    assert hosted() is expected


def test_a_bad_mnist_hosted_value_is_named(monkeypatch):
    monkeypatch.setenv("MNIST_HOSTED", "maybe")
    with pytest.raises(ValueError, match="MNIST_HOSTED='maybe' is not valid: it takes 1"):
        hosted()


def test_a_bad_mnist_hosted_value_hides_tracebacks_and_the_sidebar_names_it(monkeypatch, runs):
    monkeypatch.setenv("MNIST_HOSTED", "maybe")
    assert not errors.shows_tracebacks()
    at = app().run()
    assert not at.exception
    assert any("MNIST_HOSTED='maybe' is not valid" in e.value for e in at.error), [e.value for e in at.error]


def test_the_servers_log_has_a_line_with_time_and_level_for_each_jobs_start_and_end(tmp_path):
    """The logging the app sets up (labui.errors) reaches the engine's loggers: a job started in the server
    process writes its start and its end to stderr."""
    script = (
        "import labui.errors\n"
        "from mnist_core.runner import Runner\n"
        f"runner = Runner(backend='threads', runs_dir={str(tmp_path)!r})\n"
        "job = runner.submit('alice', 'train', {'arch': 'mlp', 'model': {'depth': 1, 'width': 16}, "
        "'max_batches': 3, 'record': False})\n"
        "runner.wait(job.id, 120)\n"
        "runner.shutdown()\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    lines = done.stderr.splitlines()
    started = [line for line in lines if " INFO mnist_core.runner: job " in line and " started: owner=alice" in line]
    ended = [line for line in lines if " INFO mnist_core.runner: job " in line and " done: owner=alice" in line]
    assert len(started) == 1 and len(ended) == 1, done.stderr
    assert re.match(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} INFO ", started[0])
