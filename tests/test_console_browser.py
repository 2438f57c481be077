"""The web console in a real browser: Debian's chromium, headless, driven by Playwright
(never `playwright install`: the browser is the system's). Every wait is on a condition
of the page; mail and logins come from smtplib and imaplib over real sockets.

`MAILHARNESS_SCREENSHOTS=1` also writes the main views to docs/console/*.png.
"""

from __future__ import annotations

import imaplib
import os
import smtplib
from collections.abc import Iterator
from email.message import EmailMessage
from pathlib import Path

import pytest

from tests.helpers import require_executable
from tests.test_serve import Served, serve

playwright = pytest.importorskip(
    "playwright.sync_api", reason="playwright is not installed (pip install -e '.[dev]')"
)
Browser = playwright.Browser
Page = playwright.Page
expect = playwright.expect

SCREENSHOTS = Path(__file__).resolve().parent.parent / "docs" / "console"
# Page conditions are met in milliseconds; a loaded 2-core machine may take seconds.
expect.set_options(timeout=30_000)


def shot(page: Page, name: str) -> None:
    """A screenshot for the docs, only when asked (normal runs leave the tree clean)."""
    if os.environ.get("MAILHARNESS_SCREENSHOTS") == "1":
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=SCREENSHOTS / f"{name}.png", full_page=False)


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    executable = require_executable("chromium")
    with playwright.sync_playwright() as pw:
        launched = pw.chromium.launch(executable_path=executable, headless=True)
        try:
            yield launched
        finally:
            launched.close()


@pytest.fixture
def served() -> Iterator[Served]:
    with serve("--ui", "--quiet", "--fronts", "all") as running:
        yield running


@pytest.fixture
def page(browser: Browser, served: Served) -> Iterator[Page]:
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    try:
        opened = context.new_page()
        opened.goto(served.facts["ui"]["open"])
        expect(opened.locator("#live")).to_have_text("live")
        expect(opened.locator("#scenario-name")).to_have_text(served.facts["scenario"])
        yield opened
    finally:
        context.close()


def tab(page: Page, view: str) -> None:
    page.locator(f'.tab[data-view="{view}"]').click()


def imap_login(served: Served, password: str = "alice-password") -> None:
    host, port = served.endpoint("imap/implicit")
    with imaplib.IMAP4_SSL(host, port, ssl_context=served.context(), timeout=10) as imap:
        imap.login("alice@example.test", password)


def send(served: Served, message: EmailMessage) -> None:
    host, port = served.endpoint("smtp/implicit")
    with smtplib.SMTP_SSL(host, port, context=served.context(), timeout=10) as smtp:
        smtp.login("alice@example.test", "alice-password")
        smtp.send_message(message)


def mail(subject: str, text: str, html: str | None = None) -> EmailMessage:
    message = EmailMessage()
    message["From"], message["To"], message["Subject"] = (
        "alice@example.test",
        "bob@example.test",
        subject,
    )
    message.set_content(text)
    if html is not None:
        message.add_alternative(html, subtype="html")
    return message


def test_mail_sent_with_smtplib_appears_without_a_reload(page: Page, served: Served) -> None:
    shot(page, "overview")
    tab(page, "mail")
    expect(page.locator("#no-mail")).to_be_visible()
    page.evaluate("window.notReloaded = true")
    send(served, mail("Invoice 42", "Please find the invoice.", "<h1>Invoice 42</h1><p>Due.</p>"))
    row = page.locator("#messages tbody tr")
    expect(row).to_have_count(1)
    expect(row).to_contain_text("Invoice 42")
    expect(page.locator("#count-mail")).to_have_text("1")
    assert page.evaluate("window.notReloaded") is True
    row.get_by_role("button", name="Invoice 42").click()
    expect(page.locator("#message pre")).to_contain_text("Please find the invoice.")
    page.get_by_role("button", name="HTML").click()
    frame = page.frame_locator("iframe.html-body")
    expect(frame.locator("h1")).to_have_text("Invoice 42")
    shot(page, "mail")


def test_a_failed_imap_login_appears_with_its_reason(page: Page, served: Served) -> None:
    tab(page, "sessions")
    with pytest.raises(imaplib.IMAP4.error):
        imap_login(served, "not-her-password")
    failed = page.locator('#sessions tbody tr[data-outcome="login failed"]')
    expect(failed).to_have_count(1)
    expect(failed.locator(".reason")).to_contain_text("AUTHENTICATIONFAILED")
    expect(failed).to_contain_text("alice@example.test")
    failed.get_by_role("button").click()
    transcript = page.locator("#transcript-text")
    expect(transcript).to_contain_text("LOGIN")
    expect(transcript).not_to_contain_text("not-her-password")  # secrets masked
    # Filters: an outcome that matches nothing hides the row.
    page.get_by_label("Outcome").select_option("login ok")
    expect(failed).to_have_count(0)
    page.get_by_label("Outcome").select_option("")
    expect(failed).to_have_count(1)
    shot(page, "sessions")


def test_an_outage_switched_in_the_page_fails_the_next_login_until_switched_off(
    page: Page, served: Served
) -> None:
    imap_login(served)
    tab(page, "switches")
    outage = page.locator("#sw-outage")
    expect(outage).to_have_attribute("aria-pressed", "false")
    outage.click()
    expect(outage).to_have_attribute("aria-pressed", "true")  # read back from the server
    with pytest.raises(imaplib.IMAP4.error, match="UNAVAILABLE"):
        imap_login(served)
    shot(page, "switches")
    outage.click()
    expect(outage).to_have_attribute("aria-pressed", "false")
    imap_login(served)
    tab(page, "sessions")
    expect(page.locator('#sessions tbody tr[data-outcome="login ok"]')).to_have_count(2)


HOSTILE = (
    "<p id=shown>Hostile body</p>"
    "<script>top.postMessage('script ran', '*')</script>"
    "<img src=x onerror=\"top.postMessage('onerror ran', '*')\">"
    "<svg onload=\"top.postMessage('onload ran', '*')\"></svg>"
)


def test_a_hostile_html_body_runs_no_script(page: Page, served: Served, browser: Browser) -> None:
    # Had any of it run, it would post a message to the console page: record them.
    page.evaluate(
        "window.posted = []; addEventListener('message', (e) => window.posted.push(e.data))"
    )
    send(served, mail("Hostile", "see HTML", HOSTILE))
    tab(page, "mail")
    page.get_by_role("button", name="Hostile").click()
    page.get_by_role("button", name="HTML").click()
    frame_element = page.locator("iframe.html-body")
    expect(frame_element).to_have_attribute("sandbox", "")
    expect(page.frame_locator("iframe.html-body").locator("#shown")).to_have_text("Hostile body")
    # The control: the same HTML in a frame that may run scripts does post, so the page
    # above would have heard it.
    control = browser.new_page()
    try:
        control.set_content('<iframe id=f sandbox="allow-scripts"></iframe>')
        control.evaluate(
            "window.posted = []; addEventListener('message', (e) => window.posted.push(e.data))"
        )
        control.locator("#f").evaluate("(f, html) => { f.srcdoc = html }", HOSTILE)
        control.wait_for_function("window.posted.length >= 3")
    finally:
        control.close()
    page.get_by_role("button", name="Raw source").click()
    expect(page.locator("#raw-source")).to_contain_text("<script>")  # shown as text
    assert page.evaluate("window.posted") == []


def test_keyboard_narrow_window_and_dark_theme(page: Page, served: Served) -> None:
    # The view tabs are buttons: arrows move between them, Enter opens one.
    page.locator(".tab").first.focus()
    page.keyboard.press("ArrowRight")
    expect(page.locator(".tab").nth(1)).to_be_focused()
    page.keyboard.press("Enter")
    expect(page.locator("#view-sessions")).to_be_visible()
    page.keyboard.press("Tab")
    outline = page.evaluate("getComputedStyle(document.activeElement).outlineStyle")
    assert outline != "none"
    # Nothing wider than a phone's window.
    page.set_viewport_size({"width": 390, "height": 800})
    tab(page, "switches")
    assert page.evaluate("document.documentElement.scrollWidth <= innerWidth")
    shot(page, "narrow")
    page.emulate_media(color_scheme="dark")
    page.set_viewport_size({"width": 1280, "height": 800})
    tab(page, "overview")
    background = page.evaluate("getComputedStyle(document.body).backgroundColor")
    assert background == "rgb(21, 23, 26)"
    shot(page, "overview-dark")
    # A message appended over IMAP shows in alice's INBOX, live.
    page.emulate_media(color_scheme="light")
    tab(page, "mailboxes")
    inbox = page.locator("#mailboxes summary").first
    expect(inbox).to_contain_text("INBOX — 0 message(s)")
    host, port = served.endpoint("imap/implicit")
    with imaplib.IMAP4_SSL(host, port, ssl_context=served.context(), timeout=10) as imap:
        imap.login("alice@example.test", "alice-password")
        imap.append("INBOX", "(\\Seen)", None, mail("Welcome aboard", "hello").as_bytes())
    expect(inbox).to_contain_text("INBOX — 1 message(s)")
    expect(page.locator("#mailboxes")).to_contain_text("Welcome aboard")
    shot(page, "mailboxes")


def test_user_and_front_switches_in_the_page_change_the_next_login(
    page: Page, served: Served
) -> None:
    tab(page, "switches")
    alice = page.locator('#user-switches [data-user="alice@example.test"]')
    disabled = alice.get_by_role("button", name="Account disabled")
    disabled.click()
    expect(disabled).to_have_attribute("aria-pressed", "true")
    with pytest.raises(imaplib.IMAP4.error):
        imap_login(served)
    disabled.click()
    expect(disabled).to_have_attribute("aria-pressed", "false")
    imap_login(served)
    alice.get_by_label("password").fill("changed-by-qa")
    alice.get_by_role("button", name="Change password").click()
    expect(page.locator("#users")).to_contain_text("changed-by-qa")
    with pytest.raises(imaplib.IMAP4.error):
        imap_login(served)
    imap_login(served, "changed-by-qa")
    front = page.locator("#fronts form").filter(has_text="imap/implicit")
    front.get_by_label("latency ms").fill("5")
    front.get_by_role("button", name="Apply").click()
    expect(front.locator(".hint")).to_have_text("latency")
    imap_login(served, "changed-by-qa")
    front.get_by_label("bytes/s").fill("100000")
    front.get_by_role("button", name="Apply").click()
    expect(front.locator(".hint")).to_have_text("latency, bandwidth")
    front.get_by_role("button", name="Clear").click()
    expect(front.locator(".hint")).to_have_text("no faults")


def test_the_scenario_switcher_serves_another_scenario(page: Page, served: Served) -> None:
    before = page.locator("#client-sees").inner_text()
    page.get_by_label("Switch scenario").select_option("auth-account-disabled")
    page.get_by_role("button", name="Serve it").click()
    expect(page.locator("#scenario-name")).to_have_text("auth-account-disabled")
    expect(page.locator("#client-sees")).not_to_have_text(before)
    # The same addresses now refuse alice, and the new server's sessions show live.
    with pytest.raises(imaplib.IMAP4.error):
        imap_login(served)
    tab(page, "sessions")
    expect(page.locator('#sessions tbody tr[data-outcome="login failed"]')).to_have_count(1)
