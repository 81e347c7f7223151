"""The web app in a real browser: Playwright driving Debian's chromium, a page recorder that fails a
test on requests leaving the host, console errors and axe-core's serious or critical findings,
and the steps the browser tests share. The `browser` fixture is in tests/integration/conftest.py."""

from __future__ import annotations

import contextlib
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from tests.support import ROOT

# Debian's chromium where it is installed (the build the suite is written against), else the one on PATH
DEBIAN_CHROMIUM = "/usr/bin/chromium"
CHROMIUM = DEBIAN_CHROMIUM if Path(DEBIAN_CHROMIUM).exists() else shutil.which("chromium") or DEBIAN_CHROMIUM
AXE = ROOT / "tests" / "browser_vendor" / "axe-4.11.0.min.js"
ARTIFACTS = ROOT / "var" / "browser"
SCREENSHOTS = ROOT / "docs" / "screenshots"
TIMEOUT_MS = 20_000


class Tab:
    """A page that records what would make the test fail: requests to other hosts, console
    errors, uncaught exceptions."""

    def __init__(self, context: Any, base: str, allowed: tuple[str, ...] = ()) -> None:
        self.context, self.base = context, base
        self.page = context.new_page()
        self.page.set_default_timeout(TIMEOUT_MS)
        self.outside: list[str] = []
        self.errors: list[str] = []
        self.page.on("request", lambda r: None if r.url.startswith((base, "data:", "blob:", *allowed))
                     else self.outside.append(r.url))
        self.page.on("console", lambda m: self.errors.append(m.text) if m.type == "error" and not _expected(m.text)
                     else None)
        self.page.on("pageerror", lambda e: self.errors.append(str(e)))
        # a page, script, stylesheet or image that fails to load is an error (an API answer the
        # page handles, such as a refused seat, is not)
        self.page.on("response", lambda r: self.errors.append(f"{r.status} {r.url}")
                     if r.status >= 400 and r.request.resource_type in {"document", "script", "stylesheet", "image"}
                     else None)

    def go(self, path: str) -> Any:
        """Open a page; every HTML page carries the headers of docs/security.md (a nonce CSP with no
        'unsafe-inline' script, no framing, nosniff). A CSP violation would be a console error."""
        response = self.page.goto(self.base + path)
        if "text/html" in response.headers.get("content-type", ""):
            csp = response.headers.get("content-security-policy", "")
            script_src = csp.split("script-src", 1)[-1].split(";", 1)[0]
            assert "default-src 'self'" in csp and "frame-ancestors 'none'" in csp, (path, csp)
            assert "'nonce-" in script_src and "'unsafe-inline'" not in script_src, (path, csp)
            assert response.headers.get("x-content-type-options") == "nosniff", path
        return self.page

    def check(self, skip: tuple[str, ...] = ()) -> None:
        """No request left the host, nothing was logged as an error, axe finds nothing serious
        (outside ``skip``: selectors of markup that is not ours, such as a test double's card form)."""
        assert not self.outside, self.outside
        assert not self.errors, self.errors
        self.page.add_script_tag(path=str(AXE))
        violations = self.page.evaluate("""async (skip) => {
            const r = await axe.run({exclude: skip.map((s) => [s])}, {resultTypes: ["violations"]});
            return r.violations.filter(v => ["serious", "critical"].includes(v.impact))
                               .map(v => v.id + ": " + v.nodes.map(n => n.target.join(" ")).join(", "));
        }""", list(skip))
        assert not violations, violations

    def shot(self, name: str) -> None:
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        self.page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=True)


def _expected(text: str) -> bool:
    # the browser logs every non-2xx fetch; answers the page handles (a refused seat, the REST
    # server's 503 for a stream) are not errors of the page
    return "Failed to load resource" in text


@contextlib.contextmanager
def session(browser: Any, base: str, name: str, **options: Any) -> Iterator[Any]:
    """A browser context with tracing; on failure its trace and a screenshot stay in var/browser."""
    # Playwright's waiting helpers evaluate strings, which the pages' Content-Security-Policy
    # forbids (as it should); the header itself is checked in Tab.go
    context = browser.new_context(base_url=base, bypass_csp=True, **options)
    context.tracing.start(screenshots=True, snapshots=True)
    try:
        yield context
    except BaseException:
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        for i, page in enumerate(context.pages):
            with contextlib.suppress(Exception):
                page.screenshot(path=str(ARTIFACTS / f"{name}-{i}.png"), full_page=True)
        context.tracing.stop(path=str(ARTIFACTS / f"{name}-trace.zip"))
        context.close()
        raise
    context.tracing.stop()
    context.close()


def log_in(context: Any, user: dict[str, Any]) -> None:
    r = context.request.post("/api/auth/session", data={"email": user["email"], "password": user["password"]})
    assert r.status == 200, r.text()


def join_by_api(live: Any, event_id: int, users: list[dict[str, Any]]) -> None:
    import requests

    for u in users:
        r = requests.post(f"{live.url}/api/queue/{event_id}/join", headers=u["headers"], timeout=5)
        assert r.status_code == 202, r.text


