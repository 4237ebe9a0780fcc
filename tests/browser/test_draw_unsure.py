"""The Draw page in Chromium: a dot is refused and an X gets no answer, never a big confident digit."""

import re

from playwright.sync_api import expect
from test_app_browser import draw, wait_until_idle

X = ([(80 + 8 * i, 80 + 8 * i) for i in range(16)], [(200 - 8 * i, 80 + 8 * i) for i in range(16)])


def open_draw(page, app_url) -> None:
    page.goto(f"{app_url}/Draw")
    expect(page.locator("h1").first).to_contain_text("Draw a digit")
    wait_until_idle(page)


def expect_no_answer(page) -> None:
    assert page.get_by_text(re.compile(r"reads \d \(\d")).count() == 0  # the answer's wording: "best reads 7 (99.1%)"
    assert page.locator('[data-testid="stException"]').count() == 0


def test_a_tiny_dot_is_refused_with_draw_larger(page, app_url):
    open_draw(page, app_url)  # before the fix the dot was read as "0 (89.7%)"
    draw(page, [(140, 150), (141, 150), (141, 151)])
    expect(page.get_by_text("Too little ink to read")).to_be_visible()
    expect(page.get_by_text("Draw the digit larger")).to_be_visible()
    expect_no_answer(page)


def test_an_x_is_not_sure_with_two_guesses_and_no_answer(page, app_url):
    open_draw(page, app_url)
    for stroke in X:
        draw(page, stroke)
        wait_until_idle(page)
    expect(page.get_by_text("Not sure: maybe a")).to_be_visible()
    expect_no_answer(page)
