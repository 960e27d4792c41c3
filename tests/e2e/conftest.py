"""Real-browser fixtures: Debian's Chromium driven by Playwright, against pytest-django's live server.

Never downloads a browser: CHROMIUM (default /usr/bin/chromium) must exist, or the test fails saying so.
A screenshot of the page is saved under test-artifacts/ when a test fails.
"""
from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
# Flags for a closed network: no background traffic, no first-run, no GPU.
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--disable-dev-shm-usage"]


@pytest.hookimpl(tryfirst=True, hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    setattr(item, f"rep_{report.when}", report)


@pytest.fixture(scope="session")
def _playwright():
    if not (Path(CHROMIUM).exists() or shutil.which(CHROMIUM)):
        pytest.fail(f"Chromium not found at {CHROMIUM}: install Debian's `chromium` package (scripts/system-deps.sh).")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.fail("Python Playwright is not installed: `pip install -e '.[dev]'`.")
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"  # Playwright's sync API runs an event loop in this thread
    with sync_playwright() as p:
        yield p


@pytest.fixture(scope="session")
def browser(_playwright):
    browser = _playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
    yield browser
    browser.close()


@pytest.fixture
def page(browser, request, live_server):
    context = browser.new_context(base_url=live_server.url, viewport={"width": 1400, "height": 900})
    page = context.new_page()
    page.set_default_timeout(20_000)
    yield page
    failed = getattr(request.node, "rep_call", None)
    if failed is not None and failed.failed:
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / f"{request.node.name}.png"), full_page=True)
    context.close()


def totp_code(key: bytes, ahead: int = 0) -> str:
    from django_otp.oath import totp

    return f"{totp(key, 30, 0, 6, ahead):06d}"


def next_code(username: str) -> str:
    """A code of the user's authenticator that it has not accepted yet (the next step's when this one was used: the
    device accepts one step of drift, and refuses a code used before)."""
    from django_otp.oath import TOTP
    from django_otp.plugins.otp_totp.models import TOTPDevice

    device = TOTPDevice.objects.get(user__username=username, confirmed=True)
    now = TOTP(device.bin_key, device.step, device.t0, device.digits, device.drift).t()
    return totp_code(device.bin_key, ahead=1 if device.last_t >= now else 0)


def login(page, username: str, password: str) -> None:
    """Log in through the login page, and give the second factor where the person's role needs one (investigators,
    statisticians, seniors): the first time by setting up an authenticator on the set-up page (reading its key as a
    person types it into their app), later with a code of that authenticator."""
    page.goto("/accounts/login/")
    page.fill("input[name=username]", username)
    page.fill("input[name=password]", password)
    page.click("button[type=submit]")
    page.wait_for_url(lambda url: "/accounts/login/" not in url)
    if "/accounts/second-factor/setup/" in page.url:
        import base64

        key = page.inner_text("[data-testid=totp-key]").replace(" ", "")
        page.fill("input[name=code]", totp_code(base64.b32decode(key + "=" * (-len(key) % 8))))
        page.click("main button[type=submit]")  # (the navigation bar's "Log out" is a submit button too)
        page.wait_for_selector("[data-testid=recovery-codes]")
        page.click("[data-testid=continue]")
        page.wait_for_url(lambda url: "/accounts/second-factor/" not in url)
    elif "/accounts/second-factor/" in page.url:
        page.fill("input[name=code]", next_code(username))
        page.click("main button[type=submit]")
        page.wait_for_url(lambda url: "/accounts/second-factor/" not in url)
