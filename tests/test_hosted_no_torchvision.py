"""The app without torchvision (a CPU-only install): every page renders, what needs it says so.

torchvision is made unimportable in a fresh interpreter (sys.modules['torchvision'] = None makes every
`import torchvision` raise ImportError, as a missing package does), which then runs the app's page tests
and the checks below. The checks marked `inside` run only in that interpreter; the outer tests make sure
they ran there and passed (a skip would not count).
"""

import importlib
import pkgutil
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
WITHOUT_TORCHVISION = (
    "import sys; sys.modules['torchvision'] = None; import pytest; sys.exit(pytest.main(sys.argv[1:]))"
)
blocked = sys.modules.get("torchvision", ...) is None
inside = pytest.mark.skipif(not blocked, reason="runs in the interpreter without torchvision (see the outer tests)")


def run_without_torchvision(*tests: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", WITHOUT_TORCHVISION, "-q", "-p", "no:cacheprovider", "-rs", *tests],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=1800,
    )


def passed_without_skips(result: subprocess.CompletedProcess, expected: int) -> None:
    tail = result.stdout[-3000:] + result.stderr[-2000:]
    assert result.returncode == 0, tail
    summary = re.search(r"(\d+) passed", result.stdout)
    assert summary and int(summary.group(1)) == expected and "skipped" not in result.stdout.splitlines()[-1], tail


def test_every_page_renders_without_torchvision():
    pages = 1 + len([p for p in (ROOT / "pages").glob("*.py") if not p.name.startswith("_")])
    passed_without_skips(
        run_without_torchvision("tests/test_app.py::test_every_page_renders_without_exceptions"), pages
    )


def test_what_needs_torchvision_says_so_without_it():
    checks = [name for name in globals() if name.startswith("test_inside_")]
    passed_without_skips(
        run_without_torchvision(*(f"tests/test_hosted_no_torchvision.py::{c}" for c in checks)), len(checks)
    )


@inside
def test_inside_every_module_of_the_core_and_the_ui_imports():
    for package in ("mnist_core", "labui"):
        for module in pkgutil.walk_packages([str(ROOT / package)], prefix=f"{package}."):
            importlib.import_module(module.name)
    assert sys.modules["torchvision"] is None  # nothing got a real torchvision in by another name


@inside
def test_inside_a_torchvision_backbone_says_it_needs_torchvision():
    from mnist_core.transfer import BackboneUnavailable, load_backbone

    for name in ("resnet18", "mobilenet_v3_small", "vgg16"):
        with pytest.raises(BackboneUnavailable, match="needs torchvision, which is not installed here.*Fashion-MNIST"):
            load_backbone(name, allow_download=False)
    assert load_backbone("fashion_cnn").info.name == "fashion_cnn"  # the shipped backbone needs none


@inside
def test_inside_downloading_mnist_says_it_needs_torchvision(tmp_path):
    from mnist_core.data import DataError, load_mnist

    with pytest.raises(DataError, match="downloading MNIST needs torchvision.*bundled files"):
        load_mnist(tmp_path, download=True)
    assert len(load_mnist().test_labels) == 10_000  # the bundled files need none


@inside
def test_inside_the_transfer_page_shows_the_message_for_a_torchvision_backbone(runs):
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_file(str(ROOT / "pages" / "10_Transfer.py"), default_timeout=120).run()
    at.selectbox(key="transfer.backbone").set_value("resnet18").run()
    assert not at.exception, [e.message for e in at.exception]
    assert any("ResNet18 needs torchvision, which is not installed here" in e.value for e in at.error), [
        e.value for e in at.error
    ]
