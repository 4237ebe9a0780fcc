"""The app in real Chromium: shared links open the right page, a run trains and shows its curve."""

import math
import re

import pytest
from playwright.sync_api import expect

from labui.serve import PAGE_DONE_JS, running_app

PAGES = {
    "": "MNIST Lab",
    "Data": "Data",
    "Train": "Train",
    "Draw": "Draw a digit",
    "Embeddings": "Embeddings",
    "Inspect": "Inspect",
    "GAN": "Conditional GAN",
    "Compare": "Compare",
    "Transfer": "Transfer learning",
    "Build": "Build",
}  # URL path -> title on that page


def enter(field, text: str) -> None:
    """Type into a field and commit it, as a user does."""
    field.fill(text)
    field.press("Enter")


def open_page(page, app_url, path: str, title: str) -> None:
    page.goto(f"{app_url}/{path}")
    expect(page.locator("h1").first).to_contain_text(title)
    wait_until_idle(page)


def wait_until_idle(page):
    """Until the page is done (script run over, nothing stale or loading); the status widget alone says too early."""
    page.wait_for_selector('[data-testid="stApp"]')
    page.wait_for_function(PAGE_DONE_JS, timeout=60_000)


@pytest.mark.parametrize("path, title", PAGES.items())
def test_a_shared_link_opens_that_page_with_the_app_navigation(page, app_url, path, title):
    page.goto(f"{app_url}/{path}")
    expect(page.locator("h1").first).to_contain_text(title)
    wait_until_idle(page)
    assert page.locator('[data-testid="stException"]').count() == 0
    expect_app_navigation(page)


def expect_app_navigation(page):
    nav = page.locator('[data-testid="stSidebarNav"]')
    expect(nav).to_contain_text("Train")
    expect(nav.get_by_text("Home", exact=True)).to_be_visible()
    expect(nav.get_by_text("app", exact=True)).to_have_count(0)


@pytest.mark.parametrize("path, title", [(p, t) for p, t in PAGES.items() if p])
def test_a_shared_link_that_is_a_fresh_servers_first_request_gets_the_app_navigation(browser, tmp_path, path, title):
    """Streamlit decides at a server's first session whether pages/ drives the navigation: test that case."""
    with running_app({"MNIST_RUNS_DIR": str(tmp_path / "runs")}) as url:
        context = browser.new_context(viewport={"width": 1400, "height": 1000})
        page = context.new_page()
        page.goto(f"{url}/{path}")
        expect(page.locator("h1").first).to_contain_text(title)
        wait_until_idle(page)
        expect_app_navigation(page)
        assert page.url.rstrip("/").endswith(f"/{path}")
        page.reload()  # a new session of the same server
        expect(page.locator("h1").first).to_contain_text(title)
        expect_app_navigation(page)
        context.close()


def test_a_class_whose_first_visits_all_arrive_by_page_url_at_once_gets_the_app_navigation(browser, tmp_path):
    """Before: one first run turned the automatic navigation off while the others had already started under it,
    and they kept it ("app", no Home) for as long as they stayed: 2 of 24 first visitors."""
    paths = ["Train", "Build", "Compare", "Transfer"] * 2
    with running_app({"MNIST_RUNS_DIR": str(tmp_path / "runs")}) as url:
        contexts = [browser.new_context(viewport={"width": 1400, "height": 1000}) for _ in paths]
        pages = [context.new_page() for context in contexts]
        for page, path in zip(pages, paths):  # each goto returns once the request is sent: the visits overlap
            page.goto(f"{url}/{path}", wait_until="commit")
        for page, path in zip(pages, paths):
            expect(page.locator("h1").first).to_contain_text(PAGES[path], timeout=120_000)
            wait_until_idle(page)
            expect_app_navigation(page)
        for context in contexts:
            context.close()


def test_a_number_outside_its_range_is_named_and_kept_and_nothing_trains_on_it(page, app_url):
    """Streamlit's own bounds only reddened the field and kept its last valid value: 0 epochs trained 1."""
    open_page(page, app_url, "Train", "Train")
    epochs = page.get_by_role("spinbutton", name="Epochs", exact=True)
    enter(epochs, "0")
    wait_until_idle(page)
    expect(page.get_by_text("epochs must be between 1 and 200 (got 0)")).to_be_visible()
    expect(epochs).to_have_value("0")
    expect(page.get_by_role("button", name="Start training")).to_be_disabled()
    enter(epochs, "2")
    wait_until_idle(page)
    expect(page.get_by_text("epochs must be between")).to_have_count(0)
    seed = page.get_by_role("spinbutton", name="Seed", exact=True)
    # Past 2**53, which a JavaScript number cannot hold exactly, Streamlit's own alert speaks instead.
    enter(seed, "10000000000000")
    wait_until_idle(page)
    expect(page.get_by_text("seed must be between 0 and 4,294,967,295 (got 10,000,000,000,000)")).to_be_visible()
    expect(page.get_by_role("button", name="Start training")).to_be_disabled()
    assert page.locator('[data-testid="stException"]').count() == 0


def test_a_short_run_from_the_train_page_shows_its_curve_and_lands_in_the_runs(page, app_url):
    open_page(page, app_url, "Train", "Train")
    enter(page.get_by_role("spinbutton", name="Stop after N batches"), "40")
    enter(page.get_by_label("Run name (optional)"), "browser-run")
    wait_until_idle(page)
    page.get_by_role("button", name="Start training").click()
    expect(page.get_by_text("Saved as checkpoint browser-run")).to_be_visible(timeout=90_000)
    expect(page.locator(".js-plotly-plot").first).to_be_visible()
    expect(page.get_by_text("--name browser-run")).to_be_visible(timeout=30_000)  # the runs panel shows it
    assert page.locator('[data-testid="stException"]').count() == 0
    page.reload()  # a reload is a new Streamlit session, but the same user: the run is still theirs
    expect(page.get_by_text("Saved as checkpoint browser-run")).to_be_visible()


def draw(page, points):
    """Drag the mouse through canvas coordinates (0-280), as a user's stroke."""
    canvas = page.locator("canvas.upper-canvas")
    canvas.scroll_into_view_if_needed()
    box = canvas.bounding_box()
    page.mouse.move(box["x"] + points[0][0], box["y"] + points[0][1])
    page.mouse.down()
    for x, y in points[1:]:
        page.mouse.move(box["x"] + x, box["y"] + y, steps=2)
    page.mouse.up()


@pytest.mark.parametrize(
    "digit, stroke",
    [
        (1, [(140, 50 + 10 * i) for i in range(19)]),  # a vertical line
        (
            0,
            [(140 + 55 * math.sin(t / 20 * 2 * math.pi), 150 - 90 * math.cos(t / 20 * 2 * math.pi)) for t in range(22)],
        ),
    ],
)
def test_a_digit_drawn_with_the_mouse_is_read(page, app_url, digit, stroke):
    page.goto(f"{app_url}/Draw")
    expect(page.locator("h1").first).to_contain_text("Draw a digit")
    wait_until_idle(page)
    draw(page, stroke)
    expect(page.get_by_text(f"reads {digit} (")).to_be_visible()
    expect(page.get_by_text("28x28, centred on the centre of mass")).to_be_visible()
    assert page.locator('[data-testid="stException"]').count() == 0


def test_the_embeddings_page_draws_a_map_of_a_small_subset(page, app_url):
    page.goto(f"{app_url}/Embeddings")
    expect(page.locator("h1").first).to_contain_text("Embeddings")
    wait_until_idle(page)
    page.get_by_role("combobox", name="Method").click()
    page.get_by_role("option", name="PCA", exact=True).click()
    wait_until_idle(page)
    points = page.get_by_role("spinbutton", name="Images (stratified by class)")
    points.fill("1000")
    points.press("Enter")
    expect(page.get_by_text("PCA of 1,000 digits")).to_be_visible()
    expect(page.locator(".js-plotly-plot .scatterlayer, .js-plotly-plot canvas").first).to_be_attached()
    expect(page.get_by_text("10-NN accuracy in this map")).to_be_visible()
    assert page.locator('[data-testid="stException"]').count() == 0


def test_the_inspect_page_shows_the_confusion_matrix_and_feature_maps(page, app_url):
    page.goto(f"{app_url}/Inspect")
    expect(page.locator("h1").first).to_contain_text("Inspect")
    wait_until_idle(page)
    page.get_by_role("tab", name="Evaluation").click()
    expect(page.get_by_text("Confusion matrix (click a cell)")).to_be_visible()
    matrix = page.locator(".js-plotly-plot").filter(has_text="Confusion matrix")
    cell = matrix.locator(".scatterlayer path.point").nth(4 * 10 + 9).bounding_box()  # true 4, read as 9
    page.mouse.click(cell["x"] + cell["width"] / 2, cell["y"] + cell["height"] / 2)  # plotly listens on its drag layer
    expect(page.get_by_text("test digits of class 4 read as 9")).to_be_visible()
    page.get_by_role("tab", name="One digit").click()
    expect(page.get_by_text("Feature maps, conv 1").first).to_be_visible()
    assert page.locator('[data-testid="stException"]').count() == 0


def test_the_gan_page_shows_a_grid_and_the_class_picker_changes_it(page, app_url):
    page.goto(f"{app_url}/GAN")
    expect(page.locator("h1").first).to_contain_text("Conditional GAN")
    wait_until_idle(page)
    expect(page.get_by_text("One row per class, 8 samples each")).to_be_visible()
    grid = page.locator('[data-testid="stImage"] img').first
    before = grid.get_attribute("src")
    page.get_by_role("combobox", name="Class").first.click()
    page.get_by_role("option", name="7", exact=True).click()
    expect(page.get_by_text("32 samples of class 7")).to_be_visible()
    assert page.locator('[data-testid="stImage"] img').first.get_attribute("src") != before
    assert page.locator('[data-testid="stException"]').count() == 0


def test_a_two_arm_comparison_of_a_few_batches_draws_both_arms(page, app_url):
    open_page(page, app_url, "Compare", "Compare")
    enter(page.get_by_role("spinbutton", name="Stop after N batches"), "8")
    wait_until_idle(page)
    page.get_by_role("combobox", name="Vary").click()
    page.get_by_role("option", name="Dropout off vs on").click()
    wait_until_idle(page)
    expect(page.get_by_text("2 runs: dropout off, dropout 0.25")).to_be_visible()
    page.get_by_role("button", name="Start comparison").click()
    # the default name is cmp-<dimension>-<date>-<time>, so two visitors never write over each other's runs
    main = page.locator('[data-testid="stMain"]')  # the sidebar repeats the last job's status line
    expect(main.get_by_text(re.compile(r"cmp-dropout-\S+ done: 2 of 2 runs finished"))).to_be_visible(timeout=90_000)
    curves = page.locator(".js-plotly-plot").first
    for arm in ("dropout off", "dropout 0.25"):
        expect(curves.locator(".legendtext", has_text=arm)).to_be_visible()
    assert curves.locator(".scatterlayer .trace").count() == 2  # one loss curve per arm
    assert page.locator('[data-testid="stException"]').count() == 0


POINT_ON_SCREEN = """() => {
    const gd = [...document.querySelectorAll('.js-plotly-plot')].find(
        g => g.layout && g.layout.title && String(g.layout.title.text || g.layout.title).includes('digits ('));
    gd.scrollIntoView({block: 'center'});
    const trace = gd._fullData[3], xa = gd._fullLayout.xaxis, ya = gd._fullLayout.yaxis;
    let best = 0, bestGap = -1;  // the point of class 3 farthest from any other point: a click cannot miss it
    const xs = gd._fullData.flatMap(t => Array.from(t.x)), ys = gd._fullData.flatMap(t => Array.from(t.y));
    for (let i = 0; i < trace.x.length; i++) {
        let gap = Infinity;
        for (let j = 0; j < xs.length; j++) {
            const d = Math.hypot(xa.l2p(xs[j]) - xa.l2p(trace.x[i]), ya.l2p(ys[j]) - ya.l2p(trace.y[i]));
            if (d > 0 && d < gap) gap = d;
        }
        if (gap > bestGap) { bestGap = gap; best = i; }
    }
    const box = gd.getBoundingClientRect();
    return {x: box.left + xa._offset + xa.l2p(trace.x[best]), y: box.top + ya._offset + ya.l2p(trace.y[best]),
            index: Number(trace.customdata[best])};
}"""


@pytest.mark.parametrize("dims", [2, 3])
def test_a_click_on_one_point_of_a_map_shows_that_digit(page, app_url, dims):
    open_page(page, app_url, "Embeddings", "Embeddings")
    page.get_by_role("combobox", name="Method").click()
    page.get_by_role("option", name="PCA", exact=True).click()
    wait_until_idle(page)
    enter(page.get_by_role("spinbutton", name="Images (stratified by class)"), "1000")
    expect(page.get_by_text("PCA of 1,000 digits")).to_be_visible()
    if dims == 3:
        page.get_by_role("radiogroup", name="Dimensions").get_by_text("3", exact=True).click()
        expect(page.get_by_text("seen from turn 30°, tilt 20°")).to_be_visible()
    wait_until_idle(page)
    point = page.evaluate(POINT_ON_SCREEN)
    page.mouse.move(point["x"] - 3, point["y"] - 3)
    page.mouse.move(point["x"], point["y"], steps=3)  # plotly clicks the point it is hovering
    page.wait_for_timeout(300)
    page.mouse.click(point["x"], point["y"])
    split, number = ("training", point["index"]) if point["index"] < 60_000 else ("test", point["index"] - 60_000)
    expect(page.get_by_text(f"{split} digit #{number}, label 3")).to_be_visible()
    expect(page.locator('[data-testid="stImage"] img').first).to_be_visible()
    assert page.locator('[data-testid="stException"]').count() == 0
