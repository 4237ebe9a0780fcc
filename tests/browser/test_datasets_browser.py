"""The data set choice in real Chromium: the sidebar's "Data set" box switches every page to Fashion-MNIST, whose
class names then stand where the digits' labels were, and the address carries the choice for a shared link."""

from playwright.sync_api import expect

from labui.serve import PAGE_DONE_JS


def wait_until_idle(page):
    page.wait_for_selector('[data-testid="stApp"]')
    page.wait_for_function(PAGE_DONE_JS, timeout=60_000)


def test_switching_to_fashion_mnist_shows_class_names_on_the_data_page_and_home(page, app_url):
    page.goto(f"{app_url}/Data")
    expect(page.locator("h1").first).to_contain_text("Data")
    wait_until_idle(page)
    sidebar = page.locator('[data-testid="stSidebar"]')
    sidebar.get_by_role("combobox", name="Data set").click()
    page.get_by_role("option", name="Fashion-MNIST", exact=True).click()
    expect(page.get_by_text("Mean of Dress minus mean of Bag")).to_be_visible()
    wait_until_idle(page)
    expect(page.locator('img[alt$=": Sneaker"]').first).to_be_attached()  # a sample's title, "#12: Sneaker"
    expect(page.locator(".js-plotly-plot").filter(has_text="Images per class")).to_contain_text("Ankle boot")
    assert "dataset=fashion-mnist" in page.url  # a copied link opens on Fashion-MNIST
    # the choice holds on the next page: Home names its classes too
    page.locator('[data-testid="stSidebarNav"]').get_by_text("Home", exact=True).click()
    expect(page.get_by_text("The data set: Fashion-MNIST")).to_be_visible()
    expect(page.get_by_text("Training images per class: T-shirt/top")).to_be_visible()
    expect(sidebar).to_contain_text("Fashion-MNIST")
    assert page.locator('[data-testid="stException"]').count() == 0


def test_a_link_naming_fashion_mnist_opens_on_it(page, app_url):
    page.goto(f"{app_url}/Data?dataset=fashion-mnist")
    expect(page.locator("h1").first).to_contain_text("Data")
    wait_until_idle(page)
    expect(page.get_by_text("Mean of Dress minus mean of Bag")).to_be_visible()
    assert page.locator('[data-testid="stException"]').count() == 0
