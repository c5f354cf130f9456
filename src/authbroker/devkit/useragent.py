"""A scripted user agent: plays the person at the local authority's sign-in form.

It does what a person with a browser does, over plain HTTPS with ``requests`` (cookies kept,
the CA bundle from ``REQUESTS_CA_BUNDLE``/``CURL_CA_BUNDLE`` trusted, no proxies): it opens the
authorize URL, fills ``username`` and ``password`` (or picks the account on the account picker),
submits, and delivers the authority's answer to the app's redirect URI, by POSTing the hidden
fields of a ``form_post`` page to its ``action`` or by following a redirect (``query`` mode).
No JavaScript is run; the authority's pages work without it.

API (keep it small; the broker daemon's tests use it too):

``sign_in(authorize_url, username, password, *, session=None, timeout=10.0) -> Delivery``
    Completes an authorization-code sign-in. Returns where the answer went and its fields
    (``code``/``state`` or ``error``/``error_description``). An answer carrying ``error`` is
    still delivered to the app (as a browser would) and returned, not raised. Raises
    ``SignInError`` when the authority shows an error page or rejects the credentials.

``device_login(verification_uri, user_code, username, password, *, session=None,
timeout=10.0) -> str``
    Approves a device code on the authority's approval page; returns the page's text.
    Raises ``SignInError`` if the page refuses.

As a ``$BROWSER`` command: ``BROWSER="python -m authbroker.devkit.useragent %s"``
    ``python -m authbroker.devkit.useragent URL`` returns at once and signs in from a detached child
    process, because Python's ``webbrowser`` waits for the command and the app's loopback
    listener only answers after that. The child reads ``AUTHBROKER_UA_USERNAME`` and
    ``AUTHBROKER_UA_PASSWORD`` (defaults: the demo user ``user@contoso.example`` and the
    well-known demo password) and writes what happened (never a secret) to the file named by
    ``AUTHBROKER_UA_LOG``, if set. ``--wait`` signs in in the foreground instead.
"""

from __future__ import annotations

import argparse
import logging
import os
import subprocess
import sys
from dataclasses import dataclass, field
from html.parser import HTMLParser
from ipaddress import ip_address
from urllib.parse import parse_qsl, urljoin, urlsplit

import requests

from authbroker.errors import AuthBrokerError

log = logging.getLogger(__name__)

DEFAULT_USERNAME = "user@contoso.example"
DEFAULT_PASSWORD = "Passw0rd!"  # the documented, well-known demo credential
ENV_USERNAME = "AUTHBROKER_UA_USERNAME"
ENV_PASSWORD = "AUTHBROKER_UA_PASSWORD"
ENV_LOG = "AUTHBROKER_UA_LOG"
MAX_STEPS = 10


class SignInError(AuthBrokerError):
    """The authority showed an error page or refused the sign-in; the message is its text."""


@dataclass
class Delivery:
    """The authority's answer as delivered to the app's redirect URI."""

    url: str  # the redirect URI it went to (without the query)
    method: str  # "POST" (form_post) or "GET" (query)
    fields: dict[str, str]
    status: int  # the app listener's HTTP status

    @property
    def error(self) -> str | None:
        return self.fields.get("error")


# --- HTML forms -----------------------------------------------------------------------------


@dataclass
class Form:
    action: str
    method: str
    fields: dict[str, str] = field(default_factory=dict)  # named inputs other than buttons
    buttons: list[tuple[str, str, str]] = field(default_factory=list)  # (name, value, label)


class _PageParser(HTMLParser):
    """Collects the forms of a page and its visible text."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.forms: list[Form] = []
        self.text: list[str] = []
        self._skip = 0  # inside <script>/<style>
        self._button: list[str] | None = None  # (name, value) of an open <button>
        self._button_label: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        if tag in ("script", "style"):
            self._skip += 1
        elif tag == "form":
            self.forms.append(Form(a.get("action", ""), (a.get("method") or "get").upper()))
        elif not self.forms:
            return
        elif tag == "input":
            kind = a.get("type", "text").lower()
            name = a.get("name", "")
            if kind in ("submit", "image"):
                self.forms[-1].buttons.append((name, a.get("value", ""), a.get("value", "")))
            elif kind in ("checkbox", "radio"):
                if name and "checked" in a:
                    self.forms[-1].fields[name] = a.get("value", "on")
            elif name and kind not in ("button", "reset", "file"):
                self.forms[-1].fields[name] = a.get("value", "")
        elif tag == "button" and a.get("type", "submit").lower() == "submit":
            self._button = [a.get("name", ""), a.get("value", "")]
            self._button_label = []

    def handle_endtag(self, tag: str) -> None:
        if tag in ("script", "style"):
            self._skip = max(0, self._skip - 1)
        elif tag == "button" and self._button is not None and self.forms:
            label = " ".join(" ".join(self._button_label).split())
            self.forms[-1].buttons.append((self._button[0], self._button[1], label))
            self._button = None

    def handle_data(self, data: str) -> None:
        if self._skip:
            return
        if self._button is not None:
            self._button_label.append(data)
        if data.strip():
            self.text.append(data.strip())


def parse_page(html: str) -> tuple[list[Form], str]:
    """The forms on a page and its visible text (one line, whitespace collapsed)."""
    parser = _PageParser()
    parser.feed(html)
    parser.close()
    return parser.forms, " ".join(" ".join(parser.text).split())


# --- the sign-in ----------------------------------------------------------------------------


def _session(session: requests.Session | None) -> requests.Session:
    if session is not None:
        return session
    s = requests.Session()
    # trust_env=False: no proxies for loopback, no netrc. The CA bundle is applied explicitly.
    s.trust_env = False
    bundle = os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE")
    if bundle:
        s.verify = bundle
    s.headers["User-Agent"] = "authbroker-useragent/1"
    return s


def _same_origin(a: str, b: str) -> bool:
    pa, pb = urlsplit(a), urlsplit(b)
    return (pa.scheme, pa.netloc) == (pb.scheme, pb.netloc)


def _is_loopback(url: str) -> bool:
    host = urlsplit(url).hostname or ""
    if host == "localhost":
        return True
    try:
        return ip_address(host).is_loopback
    except ValueError:
        return False


def _page_error(text: str, status: int) -> SignInError:
    snippet = text[:300] or f"HTTP {status}"
    return SignInError(f"the authority refused the sign-in: {snippet}")


def _choose_button(forms: list[Form], username: str) -> tuple[Form, tuple[str, str, str]] | None:
    """On an account picker: the submit button naming exactly the user."""
    wanted = username.strip().lower()
    for form in forms:
        for button in form.buttons:
            if wanted in (button[1].strip().lower(), button[2].strip().lower()):
                return form, button
    return None


def _another_account(forms: list[Form]) -> tuple[Form, tuple[str, str, str]] | None:
    for form in forms:
        for button in form.buttons:
            if "another" in button[2].lower():
                return form, button
    return None


def _submit(
    s: requests.Session, page_url: str, form: Form, data: dict[str, str], timeout: float
) -> requests.Response:
    target = urljoin(page_url, form.action) if form.action else page_url
    if form.method == "POST":
        return s.post(target, data=data, allow_redirects=False, timeout=timeout)
    return s.get(target, params=data, allow_redirects=False, timeout=timeout)


def _deliver_redirect(s: requests.Session, location: str, timeout: float) -> Delivery:
    parts = urlsplit(location)
    fields = dict(parse_qsl(parts.query)) | dict(parse_qsl(parts.fragment))
    status = s.get(location, allow_redirects=False, timeout=timeout).status_code
    base = parts._replace(query="", fragment="").geturl()
    return Delivery(base, "GET", fields, status)


def sign_in(
    authorize_url: str,
    username: str,
    password: str,
    *,
    session: requests.Session | None = None,
    timeout: float = 10.0,
) -> Delivery:
    """Sign in at ``authorize_url`` and deliver the answer to the app; see the module doc."""
    s = _session(session)
    resp = s.get(authorize_url, allow_redirects=False, timeout=timeout)
    credentials_sent = False
    for _ in range(MAX_STEPS):
        url = resp.url
        if resp.is_redirect:
            location = urljoin(url, resp.headers["Location"])
            if _same_origin(location, authorize_url):
                resp = s.get(location, allow_redirects=False, timeout=timeout)
                continue
            log.info("delivering the answer to %s by redirect", urlsplit(location).netloc)
            return _deliver_redirect(s, location, timeout)
        forms, text = parse_page(resp.text)
        if resp.status_code >= 400:
            raise _page_error(text, resp.status_code)
        outbound = [f for f in forms if f.action and not _same_origin(urljoin(url, f.action), url)]
        if outbound:  # the form_post answer: hidden fields to the app's redirect URI
            form = outbound[0]
            target = urljoin(url, form.action)
            if not _is_loopback(target):
                raise SignInError(f"refusing to post the answer to a non-loopback {target!r}")
            log.info("delivering the answer to %s by form_post", urlsplit(target).netloc)
            status = _submit(s, url, form, dict(form.fields), timeout).status_code
            return Delivery(target, form.method, dict(form.fields), status)
        login = next((f for f in forms if "password" in f.fields), None)
        if login is not None:
            if credentials_sent:  # the form came back: wrong password or unknown user
                raise _page_error(text, resp.status_code)
            data = dict(login.fields) | {"username": username, "password": password}
            if login.buttons and login.buttons[0][0]:
                data[login.buttons[0][0]] = login.buttons[0][1]
            credentials_sent = True
            resp = _submit(s, url, login, data, timeout)
            continue
        picked = _choose_button(forms, username)  # the account picker
        if picked is None and not credentials_sent:
            # a picker without this user: take the "use another account" way to the form
            picked = _another_account(forms)
        if picked is not None:
            form, (name, value, _label) = picked
            data = dict(form.fields) | ({name: value} if name else {})
            resp = _submit(s, url, form, data, timeout)
            continue
        raise _page_error(text, resp.status_code)
    raise SignInError(f"the sign-in did not finish within {MAX_STEPS} pages")


def device_login(
    verification_uri: str,
    user_code: str,
    username: str,
    password: str,
    *,
    session: requests.Session | None = None,
    timeout: float = 10.0,
) -> str:
    """Approve ``user_code`` at ``verification_uri`` as ``username``; returns the page text."""
    s = _session(session)
    resp = s.get(verification_uri, timeout=timeout)
    forms, text = parse_page(resp.text)
    if resp.status_code >= 400:
        raise _page_error(text, resp.status_code)
    form = next((f for f in forms if "password" in f.fields), None)
    if form is None:
        raise SignInError(f"no approval form at the verification page: {text[:300]}")
    data = dict(form.fields) | {"username": username, "password": password}
    data["user_code"] = user_code
    resp = _submit(s, resp.url, form, data, timeout)
    if resp.is_redirect:
        resp = s.get(urljoin(resp.url, resp.headers["Location"]), timeout=timeout)
    forms, text = parse_page(resp.text)
    if resp.status_code >= 400 or any("password" in f.fields for f in forms):
        raise _page_error(text, resp.status_code)
    return text


# --- the $BROWSER command -------------------------------------------------------------------


def _log_to(path: str | None) -> None:
    handler: logging.Handler = (
        logging.FileHandler(path, encoding="utf-8") if path else logging.NullHandler()
    )
    handler.setFormatter(logging.Formatter("%(asctime)s useragent[%(process)d] %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.INFO)


def _sign_in_from_env(url: str) -> int:
    _log_to(os.environ.get(ENV_LOG))
    username = os.environ.get(ENV_USERNAME) or DEFAULT_USERNAME
    password = os.environ.get(ENV_PASSWORD) or DEFAULT_PASSWORD
    log.info("signing in as %s at %s", username, urlsplit(url).netloc)
    try:
        delivery = sign_in(url, username, password)
    except (SignInError, requests.RequestException) as exc:
        log.error("sign-in failed: %s", exc)
        return 1
    if delivery.error:
        log.error(
            "the authority answered %s: %s",
            delivery.error,
            delivery.fields.get("error_description", ""),
        )
        return 1
    log.info("delivered the code to %s (HTTP %s)", delivery.url, delivery.status)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m authbroker.devkit.useragent",
        description="Scripted browser for the local authority (usable as $BROWSER).",
    )
    parser.add_argument("url", help="the authorize URL to sign in at")
    parser.add_argument(
        "--wait", action="store_true", help="sign in in the foreground and exit with its result"
    )
    args = parser.parse_args(argv)
    if args.wait:
        return _sign_in_from_env(args.url)
    # Return at once; a detached child does the sign-in (webbrowser waits for this command).
    subprocess.Popen(
        [sys.executable, "-m", "authbroker.devkit.useragent", "--wait", args.url],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
        close_fds=True,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
