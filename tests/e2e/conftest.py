"""Browser fixtures: a headless Chromium driven by Playwright's sync API against `live_server`."""

import contextlib
import os
import re
import signal

import pytest
from django.db import connections
from playwright.sync_api import sync_playwright

from tests.vaults.conftest import no_queue  # noqa: F401 - the fixture, for browser tests that run jobs here

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
VIEWPORT = {"width": 1280, "height": 800}


@pytest.fixture
def browser(monkeypatch):
    """One Chromium per test (Playwright is started and stopped with it)."""
    # Playwright's sync API keeps an asyncio loop marked as running on this thread, so Django
    # would refuse every ORM call the test makes meanwhile (SynchronousOnlyOperation), though
    # nothing here runs concurrently with it. Allow them for the length of this test only.
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    with sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            chromium.close()
            # With that loop "running", Django keeps this thread's database connections apart from
            # its usual ones (asgiref treats the thread as async). Close them while it still runs,
            # else they stay open and the test database cannot be dropped at the end of the session.
            connections.close_all()


@pytest.fixture
def console_messages():
    """Every browser console message and uncaught page error of the test, as text."""
    return []


# A form's refusal (422) and a refused request of a test that tries one (403, 404) are expected answers;
# the browser logs them as "Failed to load resource", which is not a fault of the page.
EXPECTED_STATUS = re.compile(r"Failed to load resource: the server responded with a status of (4\d\d)")


@pytest.fixture
def page(browser, live_server, console_messages):
    """A tab of its own; the test fails on a console error, an uncaught page error, a CSP violation, an
    answer of 500 or more, or a request that failed (an aborted poll of a page left behind aside)."""
    context = browser.new_context(viewport=VIEWPORT, base_url=live_server.url)
    context.set_default_timeout(10_000)
    tab = context.new_page()
    faults = []
    tab.on("console", lambda msg: console_messages.append(f"console.{msg.type}: {msg.text}"))
    tab.on("pageerror", lambda exc: console_messages.append(f"pageerror: {exc}"))
    tab.on("response", lambda r: r.status >= 500 and faults.append(f"{r.status} {r.request.method} {r.url}"))
    tab.on(
        "requestfailed",
        lambda r: "ERR_ABORTED" not in (r.failure or "") and faults.append(f"failed {r.method} {r.url}: {r.failure}"),
    )
    try:
        yield tab
    finally:
        context.close()
    errors = [
        m
        for m in console_messages
        if m.startswith("pageerror")
        or "content security policy" in m.lower()
        or (m.startswith("console.error") and not EXPECTED_STATUS.search(m))
    ]
    assert not faults and not errors, f"the browser saw faults: {faults + errors}"


def csp_violations(messages):
    return [m for m in messages if "content security policy" in m.lower()]


def log_in(page, username, password):
    page.goto("/login/")
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Log in").click()


@contextlib.contextmanager
def worker_paused(proc):
    """Hold the Celery worker (SIGSTOP) so a state it would change at once can be seen first."""
    os.kill(proc.pid, signal.SIGSTOP)
    try:
        yield
    finally:
        os.kill(proc.pid, signal.SIGCONT)
