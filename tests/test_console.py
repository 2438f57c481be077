"""The web console of `mailharness serve --ui`: its HTTP side over real sockets (this
file), and the page in Debian's chromium (tests/test_console_browser.py)."""

from __future__ import annotations

import http.client
import imaplib
import json
import smtplib
import urllib.parse
from email.message import EmailMessage
from typing import Any

import pytest

from tests.test_serve import Served, port_base, serve


def _split(url: str) -> tuple[str, int]:
    parts = urllib.parse.urlsplit(url)
    assert parts.hostname is not None and parts.port is not None
    return parts.hostname, parts.port


def request(
    served: Served,
    method: str,
    path: str,
    body: object = None,
    *,
    cookie: bool = True,
    headers: dict[str, str] | None = None,
) -> tuple[int, dict[str, str], bytes]:
    """One request to the console; with the cookie the one-time URL sets, unless told not."""
    host, port = _split(served.facts["ui"]["url"])
    sent = dict(headers or {})
    if cookie:
        sent["Cookie"] = f"mailharness_console={served.facts['api']['token']}"
    data = None
    if body is not None:
        data = json.dumps(body).encode()
        sent.setdefault("Content-Type", "application/json")
    connection = http.client.HTTPConnection(host, port, timeout=30)
    try:
        connection.request(method, path, body=data, headers=sent)
        reply = connection.getresponse()
        return reply.status, dict(reply.getheaders()), reply.read()
    finally:
        connection.close()


def get_json(served: Served, path: str) -> Any:
    status, _, body = request(served, "GET", path)
    assert status == 200, body
    return json.loads(body)


def test_the_one_time_url_sets_a_strict_cookie_and_the_page_ships_in_the_package() -> None:
    with serve("--ui", "--quiet") as served:
        ui = served.facts["ui"]
        assert ui["open"] == f"{ui['url']}?token={served.facts['api']['token']}"
        path = urllib.parse.urlsplit(ui["open"])
        status, headers, _ = request(served, "GET", f"{path.path}?{path.query}", cookie=False)
        assert status == 303 and headers["Location"] == "/ui/"
        assert "HttpOnly" in headers["Set-Cookie"] and "SameSite=Strict" in headers["Set-Cookie"]
        status, _, _ = request(served, "GET", "/ui/?token=wrong", cookie=False)
        assert status == 401
        shipped = (("", "text/html"), ("console.js", "javascript"), ("console.css", "css"))
        for name, wanted in shipped:
            status, headers, _ = request(served, "GET", f"/ui/{name}", cookie=False)
            assert status == 200 and wanted in headers["Content-Type"]
            assert "script-src 'self'" in headers["Content-Security-Policy"]
        # The page loads no other origin's code.
        _, _, page = request(served, "GET", "/ui/")
        assert b"http" not in page
        assert request(served, "GET", "/ui/../__init__.py", cookie=False)[0] == 404


def test_the_api_needs_the_cookie_json_and_a_loopback_host() -> None:
    with serve("--ui", "--quiet") as served:
        assert request(served, "GET", "/api/status", cookie=False)[0] == 401
        assert get_json(served, "/api/status")["scenario"] == "healthy"
        # A cross-site form can send neither JSON nor the Strict cookie.
        form = {"Content-Type": "application/x-www-form-urlencoded"}
        assert request(served, "PUT", "/api/auth-outage", headers=form)[0] == 415
        rebound = {"Host": "attacker.example:80"}
        assert request(served, "GET", "/api/status", headers=rebound)[0] == 421
        # The bearer token works too, as for the API itself.
        bearer = {"Authorization": f"Bearer {served.facts['api']['token']}"}
        assert request(served, "GET", "/api/users", cookie=False, headers=bearer)[0] == 200


def test_sessions_show_outcome_reason_and_switches_apply() -> None:
    with serve("--ui", "--quiet") as served:
        host, port = served.endpoint("imap/implicit")
        with imaplib.IMAP4_SSL(host, port, ssl_context=served.context(), timeout=10) as imap:
            with pytest.raises(imaplib.IMAP4.error):
                imap.login("alice@example.test", "wrong-secret")
        (session,) = get_json(served, "/api/ui/sessions")
        assert session["outcome"] == "login failed"
        assert "AUTHENTICATIONFAILED" in session["reason"]
        assert session["users"] == ["alice@example.test"]
        transcript = get_json(served, f"/api/sessions/{session['id']}")["text"]
        assert "wrong-secret" not in transcript
        status, _, _ = request(served, "PUT", "/api/ui/login-rate", {"count": 1, "per_seconds": 60})
        assert status == 200
        assert get_json(served, "/api/ui/switches")["login_rate"] == {
            "count": 1,
            "per_seconds": 60.0,
        }
        status, _, _ = request(served, "PUT", "/api/ui/login-rate", {"count": None})
        assert get_json(served, "/api/ui/switches") == {"auth_outage": False, "login_rate": None}


def test_a_captured_message_is_taken_apart_and_cas_download() -> None:
    with serve("--ui", "--quiet") as served:
        message = EmailMessage()
        message["From"], message["To"] = "alice@example.test", "bob@example.test"
        message["Subject"] = "Quarterly report"
        message.set_content("plain body")
        message.add_alternative("<p>html body</p>", subtype="html")
        message.add_attachment(b"a,b\n1,2\n", maintype="text", subtype="csv", filename="r.csv")
        host, port = served.endpoint("smtp/implicit")
        with smtplib.SMTP_SSL(host, port, context=served.context(), timeout=10) as smtp:
            smtp.login("alice@example.test", "alice-password")
            smtp.send_message(message)
        view = get_json(served, "/api/ui/messages/0")
        assert view["subject"] == "Quarterly report"
        assert view["text"].strip() == "plain body"
        assert view["html"].strip() == "<p>html body</p>"
        assert view["attachments"] == [
            {"index": 0, "filename": "r.csv", "content_type": "text/csv", "size": 8}
        ]
        status, headers, body = request(served, "GET", "/api/ui/messages/0/attachments/0")
        assert status == 200 and body == b"a,b\n1,2\n"
        assert headers["Content-Type"] == "application/octet-stream"
        status, _, raw = request(served, "GET", "/api/ui/messages/0/raw")
        assert b"Subject: Quarterly report" in raw
        status, headers, pem = request(served, "GET", "/api/ui/ca/harness")
        assert pem.startswith(b"-----BEGIN CERTIFICATE-----")
        assert "attachment" in headers["Content-Disposition"]
        assert request(served, "GET", "/api/ui/ca/nope")[0] == 400


def test_the_scenario_switcher_serves_another_scenario_on_the_same_addresses() -> None:
    with serve("--ui", "--quiet") as served:
        before = {(e["protocol"], e["security"]): e["port"] for e in served.facts["endpoints"]}
        status, _, body = request(served, "PUT", "/api/ui/scenario", {"name": "auth-lockout"})
        assert status == 200, body
        facts = json.loads(body)
        assert facts["scenario"] == "auth-lockout"
        after = {(e["protocol"], e["security"]): e["port"] for e in facts["endpoints"]}
        assert {k: after[k] for k in after if k in before} == {k: before[k] for k in after}
        status, _, body = request(served, "PUT", "/api/ui/scenario", {"name": "no-such"})
        assert status == 400 and b"no-such" in body
        assert get_json(served, "/api/status")["scenario"] == "auth-lockout"


def test_refusals_and_faults_are_the_sessions_outcome() -> None:
    with serve("--ui", "--quiet", "--fronts", "imap/implicit") as served:
        host, port = served.endpoint("imap/implicit")
        assert request(served, "PUT", "/api/maintenance", {"on": True})[0] == 200
        with pytest.raises((imaplib.IMAP4.abort, imaplib.IMAP4.error, OSError)):
            imaplib.IMAP4_SSL(host, port, ssl_context=served.context(), timeout=10)
        refused = [s for s in get_json(served, "/api/ui/sessions") if s["outcome"] == "refused"]
        assert refused and "UNAVAILABLE" in refused[-1]["reason"]
        assert request(served, "PUT", "/api/maintenance", {"on": False})[0] == 200
        faults = {"faults": [{"kind": "reset"}]}
        status, _, body = request(served, "PUT", "/api/faults/imap/implicit", faults)
        assert status == 200, body
        with pytest.raises((imaplib.IMAP4.abort, OSError)):
            imaplib.IMAP4_SSL(host, port, ssl_context=served.context(), timeout=10)
        (faulted,) = [s for s in get_json(served, "/api/ui/sessions") if s["faults"]]
        assert faulted["outcome"] == "fault"
        assert "RST" in faulted["reason"]


def test_the_event_stream_tells_of_sessions_and_captured_mail() -> None:
    with serve("--ui", "--quiet") as served:
        host, port = _split(served.facts["ui"]["url"])
        stream = http.client.HTTPConnection(host, port, timeout=30)
        try:
            cookie = f"mailharness_console={served.facts['api']['token']}"
            stream.request("GET", "/api/events", headers={"Cookie": cookie})
            reply = stream.getresponse()
            assert reply.status == 200
            assert reply.getheader("Content-Type") == "text/event-stream"

            def next_event() -> dict[str, Any]:
                while True:
                    line = reply.fp.readline()
                    assert line, "stream closed"
                    if line.startswith(b"data: "):
                        return json.loads(line[6:])  # type: ignore[no-any-return]

            assert next_event() == {"kind": "hello"}
            send_to = served.endpoint("smtp/implicit")
            with smtplib.SMTP_SSL(*send_to, context=served.context(), timeout=10) as smtp:
                smtp.login("alice@example.test", "alice-password")
                smtp.sendmail("alice@example.test", ["bob@example.test"], b"Subject: hi\r\n\r\nx")
            kinds = []
            while "message" not in kinds:
                kinds.append(next_event()["kind"])
            assert kinds[0] == "session"
        finally:
            stream.close()


def test_a_port_base_puts_the_console_beside_the_api() -> None:
    base = port_base()
    with serve("--ui", "--quiet", "--port-base", str(base)) as served:
        assert served.facts["api"]["url"].endswith(f":{base + 6}")
        assert served.facts["ui"]["url"] == f"http://127.0.0.1:{base + 7}/ui/"
