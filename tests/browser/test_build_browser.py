"""The Build page in real Chromium: build a 3-layer net from empty, carry it to the Train page, start it."""

import re
import time

from playwright.sync_api import TimeoutError as PlaywrightTimeout
from playwright.sync_api import expect

from labui.serve import PAGE_DONE_JS


def wait_until_idle(page):
    page.wait_for_selector('[data-testid="stApp"]')
    page.wait_for_function(PAGE_DONE_JS, timeout=60_000)


WATCH_RUNS_JS = """() => {
    window.__reran = false;
    const app = document.querySelector('[data-testid="stApp"]');
    new MutationObserver(() => {
        if (app.getAttribute('data-test-script-state') === 'running') window.__reran = true;
    }).observe(app, {attributes: true, attributeFilter: ['data-test-script-state']});
}"""


def then_idle(page, action) -> None:
    """Do action and wait for the rerun it causes to end. Right after a click the page still looks done (the
    rerun has not started), so waiting for "done" alone can return before the page has changed."""
    page.evaluate(WATCH_RUNS_JS)
    action()
    try:
        page.wait_for_function("() => window.__reran", timeout=5_000)
    except PlaywrightTimeout:  # an action that changes nothing (choosing the option already chosen) reruns nothing
        pass
    wait_until_idle(page)


def choose(page, label: str, option: str) -> None:
    """Pick an option of a Streamlit selectbox, as a user does: open it, type to filter, press Enter.
    (A long list, such as the checkpoints after other tests have saved runs, renders only its first options.)"""
    box = page.get_by_role("combobox", name=label, exact=True)
    box.click()
    page.keyboard.type(option)
    expect(page.get_by_role("option", name=option).first).to_be_visible()
    then_idle(page, lambda: page.keyboard.press("Enter"))
    expect(box).to_have_value(re.compile("^" + re.escape(option)))


def add(page, kind: str, n: int) -> None:
    """Add a layer of this kind as the n-th."""
    choose(page, "Layer type", kind)
    then_idle(page, page.get_by_role("button", name="Add layer", exact=True).click)
    expect(page.get_by_role("textbox", name=f"Layer {n}", exact=True)).to_be_visible()


def test_build_a_three_layer_net_take_it_to_the_train_page_and_start_it(page, app_url):
    page.goto(f"{app_url}/Build")
    expect(page.locator("h1").first).to_contain_text("Build")
    wait_until_idle(page)
    choose(page, "Start from", "(empty)")
    then_idle(page, page.get_by_role("button", name="Load", exact=True).click)
    expect(page.get_by_test_id("stAlertContentError").get_by_text("the stack is empty")).to_be_visible()
    expect(page.get_by_role("button", name="Start training", exact=True)).to_be_disabled()

    add(page, "conv: 2-D convolution", 1)
    expect(page.get_by_text("finish with flatten, linear 10")).to_be_visible()  # checked live, layer named
    expect(page.get_by_role("button", name="Start training", exact=True)).to_be_disabled()
    add(page, "flatten: C x H x W -> one vector", 2)
    add(page, "linear: fully connected layer", 3)
    expect(page.get_by_text("The stack works")).to_be_visible()
    expect(page.get_by_text("→ 10 · 125,450 params")).to_be_visible()  # 16 x 28 x 28 -> 10

    page.get_by_role("button", name="Open on the Train page (every setting)").click()
    expect(page.locator("h1").first).to_contain_text("Train")
    wait_until_idle(page)
    expect(page.get_by_role("textbox", name="Layers")).to_have_value("conv 16 k=3 s=1 p=1, flatten, linear 10")

    page.get_by_role("link", name="Build").first.click()  # back: the stack is still there
    expect(page.locator("h1").first).to_contain_text("Build")
    wait_until_idle(page)
    expect(page.get_by_text("The stack works")).to_be_visible()
    stop_after = page.get_by_role("spinbutton", name="Stop after N batches")
    stop_after.fill("30")
    then_idle(page, lambda: stop_after.press("Enter"))
    name = page.get_by_label("Run name (optional)")
    name.fill("browser-built")
    then_idle(page, lambda: name.press("Enter"))
    expect(stop_after).to_have_value("30")  # a whole epoch of this net would outlast the wait below
    page.get_by_role("button", name="Start training", exact=True).click()
    expect(page.get_by_text("Training browser-built in the background")).to_be_visible()
    expect(page.get_by_role("link", name="Watch it on the Train page")).to_be_visible()
    assert page.locator('[data-testid="stException"]').count() == 0
    deadline = time.time() + 120
    while True:  # the run ends as a checkpoint: the export section lists it
        page.goto(f"{app_url}/Build")
        wait_until_idle(page)
        page.get_by_role("combobox", name="Checkpoint", exact=True).click()
        page.keyboard.type("browser-built")  # other tests' runs make a long list, rendered only in part
        if page.get_by_role("option", name="browser-built").count():
            break
        assert time.time() < deadline, (
            "the built net's run did not become a checkpoint: " + page.locator('[data-testid="stSidebar"]').inner_text()
        )
        page.keyboard.press("Escape")
        time.sleep(3)


def test_the_export_downloads_are_real_files(page, app_url, tmp_path):
    page.goto(f"{app_url}/Build")
    expect(page.locator("h1").first).to_contain_text("Build")
    wait_until_idle(page)
    choose(page, "Checkpoint", "fast")
    with page.expect_download() as script:
        page.get_by_role("button", name="Download the script (.py)").click()
    path = tmp_path / "fast.py"
    script.value.save_as(path)
    assert path.read_text().startswith("#!/usr/bin/env python3") and "class Net(nn.Sequential)" in path.read_text()
    with page.expect_download() as weights:  # made when clicked, not on every rerun
        page.get_by_role("button", name="fast.safetensors").click()
    weights.value.save_as(tmp_path / "fast.safetensors")
    import safetensors.torch

    assert "0.weight" in safetensors.torch.load_file(str(tmp_path / "fast.safetensors"))
    page.get_by_role("button", name="Export to ONNX").click()
    expect(page.get_by_text("agree on 10,000 of 10,000 test digits")).to_be_visible(timeout=60_000)
    with page.expect_download() as onnx:
        page.get_by_role("button", name="Download the model (.onnx)").click()
    assert onnx.value.suggested_filename == "fast.onnx"
