"""The Under the hood page in real Chromium: a shared link opens it, its graph and step-through draw,
and a step forward works, with no exception."""

from playwright.sync_api import expect

from labui.serve import PAGE_DONE_JS


def wait_until_idle(page):
    page.wait_for_selector('[data-testid="stApp"]')
    page.wait_for_function(PAGE_DONE_JS, timeout=180_000)


def test_under_the_hood_opens_draws_its_graph_and_steps(page, app_url):
    page.goto(f"{app_url}/Under_the_hood")
    expect(page.locator("h1").first).to_contain_text("Under the hood", timeout=180_000)
    wait_until_idle(page)
    assert page.locator('[data-testid="stException"]').count() == 0
    expect(page.locator('[data-testid="stGraphVizChart"]').first).to_be_visible()
    expect(page.get_by_text("Step 1 of", exact=False)).to_be_visible()
    page.get_by_role("button", name="Next ▶").click()
    expect(page.get_by_text("Step 2 of", exact=False)).to_be_visible(timeout=120_000)
    wait_until_idle(page)
    assert page.locator('[data-testid="stException"]').count() == 0
