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
    expect(sidebar).to_contain_text("Zalando")  # the chosen set's description (a combobox value is no text)
    assert page.locator('[data-testid="stException"]').count() == 0


def test_a_link_naming_fashion_mnist_opens_on_it(page, app_url):
    page.goto(f"{app_url}/Data?dataset=fashion-mnist")
    expect(page.locator("h1").first).to_contain_text("Data")
    wait_until_idle(page)
    expect(page.get_by_text("Mean of Dress minus mean of Bag")).to_be_visible()
    assert page.locator('[data-testid="stException"]').count() == 0


def test_a_zip_of_class_folders_is_previewed_imported_and_becomes_the_active_data_set(page, app_url, tmp_path):
    import io
    import zipfile

    import numpy as np
    from PIL import Image

    archive = tmp_path / "shapes.zip"
    rng = np.random.default_rng(0)
    with zipfile.ZipFile(archive, "w") as zf:
        for name, draw in (
            ("square", lambda a: a.__setitem__((slice(8, 20), slice(8, 20)), 255)),
            ("bar", lambda a: a.__setitem__((slice(4, 24), slice(12, 16)), 255)),
        ):
            for i in range(12):
                image = np.zeros((28, 28), np.uint8)
                draw(image)
                image = np.roll(image, rng.integers(-3, 4, 2), axis=(0, 1))
                buffer = io.BytesIO()
                Image.fromarray(image).save(buffer, format="PNG")
                zf.writestr(f"{name}/{i:03}.png", buffer.getvalue())
    page.goto(f"{app_url}/Data")
    wait_until_idle(page)
    page.locator('[data-testid="stFileUploader"] input[type="file"]').set_input_files(str(archive))
    expect(page.get_by_text("2 classes")).to_be_visible()
    page.get_by_role("button", name="Import").click()
    expect(page.get_by_text("It is now the active data set")).to_be_visible(timeout=90_000)  # an import job
    expect(page.locator('[data-testid="stSidebar"]')).to_contain_text("shapes")
    expect(
        page.get_by_text("Mean of square minus mean of bar").or_(page.get_by_text("Mean of bar minus mean of square"))
    ).to_be_visible()
    assert page.locator('[data-testid="stException"]').count() == 0
