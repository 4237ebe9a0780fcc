"""Long work from the pages goes through the server's one job runner: one live job per browser, Stop for
every kind, a sidebar entry for the live job, a queue place and refusals that name the limit (AppTest)."""

import time
from pathlib import Path

from streamlit.testing.v1 import AppTest

ROOT = Path(__file__).resolve().parent.parent
LONG = 100_000  # batches: minutes of work, unless stopped
APPTEST_OWNER = "test session id"  # AppTest's session id: every AppTest is the same browser (no cookie)


def page(path: str) -> AppTest:
    return AppTest.from_file(str(ROOT / path), default_timeout=120)


def app_at(path: str) -> AppTest:
    """A page under app.py's navigation, as a visitor opens it (the sidebar's page links need it)."""
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=120).run()
    at.switch_page(path).run()
    return at


def wait(at: AppTest, done, timeout: float = 60, what: str = "the page") -> AppTest:
    deadline = time.time() + timeout
    while not done(at):
        assert time.time() < deadline, f"{what} did not happen in {timeout:.0f} s"
        assert not at.exception, [e.message for e in at.exception]
        time.sleep(0.5)
        at.run()
    return at


def progress_texts(at: AppTest) -> str:
    return " ".join(str(p.proto) for p in at.get("progress"))


def other_visitor_job(owner: str):
    """A long training run of that browser, on the page's runner (the server's one: same settings)."""
    from labui import resources
    from mnist_core.train import TrainConfig

    config = TrainConfig(arch="mlp", model={"width": 16}, epochs=1, max_batches=LONG)
    return resources.runner().submit(owner, "train", config.to_dict(), name=f"{owner}-run")


def long_train_settings(at: AppTest) -> AppTest:
    at.selectbox(key="train.arch").set_value("mlp").run()
    at.number_input(key="model.mlp.width").set_value(16)
    at.number_input(key="train.max_batches").set_value(LONG)
    return at.run()


def test_the_sidebar_shows_a_training_run_at_once_and_stops_it(runs):
    at = long_train_settings(page("pages/3_Train.py").run())
    at.button[0].click().run()  # Start training: the sidebar, drawn before the button, shows the run at once
    assert any("Your training run" in m.value for m in at.sidebar.markdown), [m.value for m in at.sidebar.markdown]
    at.sidebar.button(key="sidebar.stop").click().run()
    wait(at, lambda a: any("stopped" in w.value for w in a.warning), timeout=90, what="the stop")
    at.run()  # the sidebar is drawn before the page: it may have seen the job a moment before it ended
    assert not any(b.key == "sidebar.stop" for b in at.sidebar.button)
    assert any("Your last training run" in c.value and "stopped" in c.value for c in at.sidebar.caption)


def test_the_sidebar_links_the_live_job_to_its_page_from_any_page(runs):
    from labui import resources

    job = other_visitor_job(APPTEST_OWNER)  # this browser's run, started on another page
    try:
        at = app_at("pages/1_Data.py")  # another page than the job's
        assert any("Your training run" in m.value for m in at.sidebar.markdown)
        links = [(link.proto.page, link.proto.label) for link in at.sidebar.get("page_link")]
        assert ("Train", "Open Train") in links, links
    finally:
        resources.runner().stop(job.id)
        resources.runner().wait(job.id, 60)


def test_a_job_over_the_hosts_cap_waits_with_its_place_in_line(runs, monkeypatch):
    from labui import resources

    monkeypatch.setenv("MNIST_MAX_JOBS", "1")
    first, second = other_visitor_job("visitor-a"), other_visitor_job("visitor-b")
    try:
        at = long_train_settings(page("pages/3_Train.py").run())
        at.button[0].click().run()
        assert "queued: 2nd in line" in progress_texts(at), progress_texts(at)
        assert any(b.key == "train.stop" for b in at.button)  # a queued job can be taken out of the line
        resources.runner().stop(first.id)  # the running job ends: the line moves up
        wait(at, lambda a: "queued: 1st in line" in progress_texts(a), what="moving up the line")
        at.button(key="train.stop").click().run()  # a queued job stops at once, before it started
        wait(at, lambda a: any("stopped before it started" in w.value.lower() for w in a.warning), what="the stop")
        assert not any(b.key == "train.stop" for b in at.button)
    finally:
        resources.runner().stop(first.id)
        resources.runner().stop(second.id)


def test_a_refusal_names_the_limit(runs, monkeypatch):
    monkeypatch.setenv("MNIST_MAX_EPOCHS", "2")
    at = page("pages/3_Train.py").run()
    at.number_input(key="train.epochs").set_value(5).run()
    at.button[0].click().run()  # Start training
    assert any("at most 2 epochs" in e.value and "MNIST_MAX_EPOCHS" in e.value for e in at.error), [
        e.value for e in at.error
    ]
    assert not at.get("progress") and not at.exception


def test_one_live_job_per_browser_across_pages(runs):
    at = long_train_settings(page("pages/3_Train.py").run())
    at.button[0].click().run()
    build = page("pages/5_Build.py").run()  # the same browser (AppTest's one session id), another page
    build.button(key="build.start_training").click().run()
    assert any("you already have a training run running" in e.value for e in build.error), [
        e.value for e in build.error
    ]
    at.button(key="train.stop").click().run()
    wait(at, lambda a: any("stopped" in w.value for w in a.warning), timeout=90, what="the stop")


def test_the_sidebar_shows_a_gan_job_and_its_stop_keeps_what_was_learned(runs):
    at = page("pages/8_GAN.py")
    at.session_state["gan.tab"] = "Train"
    at.run()
    at.selectbox(key="gan.train.variant").set_value("mlp")
    at.number_input(key="gan.train.width").set_value(8)
    at.text_input(key="gan.name").set_value("sidebar-gan")
    at.run().button(key="gan.start").click().run()
    assert any("Your GAN" in m.value and "sidebar-gan" in m.value for m in at.sidebar.markdown), [
        m.value for m in at.sidebar.markdown
    ]
    assert any("Shown on the GAN page" in c.value for c in at.sidebar.caption)  # a link under the app's navigation
    wait(
        at,
        lambda a: "step 3 of" in progress_texts(a) or "step 1" in progress_texts(a),
        timeout=120,
        what="the first GAN batches",
    )
    at.sidebar.button(key="sidebar.stop").click().run()
    wait(
        at,
        lambda a: any("sidebar-gan" in w.value and "stopped" in w.value for w in a.warning),
        timeout=120,
        what="the stop",
    )
    at.run()
    assert not any(b.key == "sidebar.stop" for b in at.sidebar.button)
    assert any("Your last GAN" in c.value and "stopped" in c.value for c in at.sidebar.caption)
    assert (runs / "gans" / "sidebar-gan.safetensors").exists()  # what it learned before the stop is kept


def test_a_comparison_over_the_runs_cap_is_refused_naming_it(runs, monkeypatch):
    monkeypatch.setenv("MNIST_MAX_COMPARE_RUNS", "2")
    at = page("pages/9_Compare.py").run()  # the default: three optimizers, one seed each
    next(b for b in at.button if b.label == "Start comparison").click().run()
    assert any(
        "at most 2 training runs" in e.value and "MNIST_MAX_COMPARE_RUNS" in e.value and "asks for 3" in e.value
        for e in at.error
    ), [e.value for e in at.error]
    assert not at.get("progress") and not at.exception


def test_stop_ends_a_comparison_and_keeps_its_runs(runs):
    at = page("pages/9_Compare.py").run()
    at.selectbox(key="compare.dimension").set_value("augmentation").run()  # two arms of a full epoch each
    at.text_input(key="compare.name.augmentation").set_value("to-stop").run()
    next(b for b in at.button if b.label == "Start comparison").click().run()
    wait(at, lambda a: any(p.proto.value > 0 for p in a.get("progress")), timeout=120, what="the first batches")
    at.button(key="compare.stop").click().run()
    wait(
        at,
        lambda a: any("to-stop" in w.value and "stopped" in w.value for w in a.warning),
        timeout=120,
        what="the stop",
    )
    assert not any(b.key == "compare.stop" for b in at.button)
    assert list(runs.glob("to-stop-*-s0.json"))  # what the first run learned before the stop is kept


def test_pressing_train_again_on_the_transfer_page_keeps_stop_working(runs):
    at = page("pages/10_Transfer.py").run()
    at.selectbox(key="transfer.labels").set_value(100)
    at.multiselect(key="transfer.arms").set_value(["scratch"])
    at.number_input(key="transfer.steps").set_value(20_000).run()  # minutes of work, unless stopped
    at.button(key="transfer.start").click().run()
    wait(at, lambda a: any(b.key == "transfer.stop" for b in a.button), what="the Stop button")
    at.button(key="transfer.start").click().run()  # the same settings again, while it runs
    assert any("you already have a transfer run running" in e.value for e in at.error), [e.value for e in at.error]
    at.button(key="transfer.stop").click().run()  # stops the one that runs (it used to be orphaned)
    wait(at, lambda a: any("stopped" in w.value for w in a.warning), timeout=60, what="the stop")
    at.run()
    assert not any(b.key == "transfer.stop" for b in at.button)
    from labui import resources

    assert resources.runner().running_count() == 0  # nothing left running in the background


def test_stop_ends_a_from_scratch_run_and_keeps_the_net_it_trained(runs):
    at = AppTest.from_file(str(ROOT / "pages/4_Under_the_hood.py"), default_timeout=180).run()
    at.number_input(key="scratch.epochs").set_value(5).run()
    at.button(key="scratch.train").click().run()
    assert any("Your from-scratch training" in m.value for m in at.sidebar.markdown)
    wait(at, lambda a: any(p.proto.value > 0 for p in a.get("progress")), timeout=120, what="the first batches")
    at.button(key="scratch.stop").click().run()
    wait(at, lambda a: bool(a.success), timeout=120, what="the stop")
    assert "Trained (stopped)" in at.success[0].value  # the net it trained is the page's now
    assert not any(b.key == "scratch.stop" for b in at.button)
    assert any(b.key == "scratch.export" for b in at.button)  # and it can be saved as a checkpoint
