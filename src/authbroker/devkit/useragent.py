"""A scripted user agent: plays the person at the local authority's sign-in form.

It does what a person with a browser does, over plain HTTPS with ``requests`` (cookies kept,
the CA bundle from ``REQUESTS_CA_BUNDLE``/``CURL_CA_BUNDLE`` trusted, no proxies): it opens the
authorize URL, fills ``username`` and ``password`` (or picks the account on the account picker),
submits, and delivers the authority's answer to the app's redirect URI, by POSTing the hidden
fields of a ``form_post`` page to its ``action`` or by following a redirect (``query`` mode).
No JavaScript is run; the authority's pages work without it.

API (keep it small; the broker daemon's tests use it too):

``sign_in(authorize_url, username, password, *, session=None, timeout=10.0, deliver=True)``
    Completes an authorization-code sign-in. Returns where the answer went and its fields
    (``code``/``state`` or ``error``/``error_description``). An answer carrying ``error`` is
    still delivered to the app (as a browser would) and returned, not raised. Raises
    ``SignInError`` when the authority shows an error page or rejects the credentials.
    With ``deliver=False`` it stops at the authority's answer and returns it undelivered
    (``status`` None); ``answer_in(response)`` reads an answer out of one response.

``device_login(verification_uri, user_code, username, password, *, session=None,
timeout=10.0) -> str``
    Approves a device code on the authority's approval page; returns the page's text.
    Raises ``SignInError`` if the page refuses.

As a ``$BROWSER`` command: ``BROWSER="python -m authbroker.devkit.useragent %s"``
    ``python -m authbroker.devkit.useragent URL`` returns at once and signs in from a detached child
    process, because Python's ``webbrowser`` waits for the command and the app's loopback
    listener only answers after that. The child reads ``AUTHBROKER_UA_USERNAME`` and
    ``AUTHBROKER_UA_PASSWORD`` (defaults: the authority's first demo user and the
    well-known demo password) and writes what happened (never a secret) to the file named by
    ``AUTHBROKER_UA_LOG``, if set: one "signing in as" line per sign-in, which ``sign_ins(log)``
    counts (the one reader of that contract). ``browser_env(log)`` sets all of this up.
    ``--wait`` signs in in the foreground instead.
"""

from __future__ import annotations

import argparse
import logging
import os
import shlex
import subprocess
import sys
from dataclasses import dataclass
from ipaddress import ip_address
from pathlib import Path
from urllib.parse import parse_qsl, urljoin, urlsplit

import requests

from authbroker import config
from authbroker.authority.directory import DEMO_PASSWORD, DEMO_USERS
from authbroker.devkit.pages import Form, parse_page
from authbroker.errors import AuthBrokerError

log = logging.getLogger(__name__)

DEFAULT_USERNAME = DEMO_USERS[0]
DEFAULT_PASSWORD = DEMO_PASSWORD  # the documented, well-known demo credential
BROWSER_VAR = "BROWSER"  # what Python's webbrowser (msal's sign-in) runs
SIGNING_IN = "signing in as"  # the log line of each sign-in: what sign_ins() counts
MAX_STEPS = 10
MODULE = "authbroker.devkit.useragent"  # run as `python -m MODULE URL`

__all__ = ["Delivery", "Form", "SignInError", "answer_in", "browser_command",
           "browser_env", "device_login", "main", "parse_page", "sign_in", "sign_ins"]


class SignInError(AuthBrokerError):
    """The authority showed an error page or refused the sign-in; the message is its text."""


@dataclass
class Delivery:
    """The authority's answer to the app's redirect URI (delivered by ``sign_in``)."""

    url: str  # the redirect URI it goes to (without the query)
    method: str  # "POST" (form_post) or "GET" (query)
    fields: dict[str, str]
    status: int | None = None  # the app listener's HTTP status; None: not delivered
    location: str = ""  # by redirect: the whole Location, as the authority gave it

    @property
    def error(self) -> str | None:
        return self.fields.get("error")


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


def _login_form(forms: list[Form]) -> Form | None:
    """The form asking for a password (sign-in or device approval), if the page has one."""
    return next((f for f in forms if "password" in f.fields), None)


def _filled(form: Form, username: str, password: str) -> dict[str, str]:
    return dict(form.fields) | {"username": username, "password": password}


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


def answer_in(resp: requests.Response) -> Delivery | None:
    """The authority's answer to the app in ``resp``, if it holds one: a redirect to another
    origin, or a page whose form posts to another origin (form_post). Not delivered."""
    if resp.is_redirect:
        location = urljoin(resp.url, resp.headers["Location"])
        if _same_origin(location, resp.url):
            return None
        parts = urlsplit(location)
        fields = dict(parse_qsl(parts.query)) | dict(parse_qsl(parts.fragment))
        base = parts._replace(query="", fragment="").geturl()
        return Delivery(base, "GET", fields, location=location)
    if resp.status_code >= 400:
        return None
    url = resp.url
    forms, _text = parse_page(resp.text)
    outbound = [f for f in forms if f.action and not _same_origin(urljoin(url, f.action), url)]
    if not outbound:
        return None
    form = outbound[0]  # the form_post answer: hidden fields to the app's redirect URI
    return Delivery(urljoin(url, form.action), form.method, dict(form.fields))


def _walk(s: requests.Session, authorize_url: str, username: str, password: str,
          timeout: float) -> Delivery:
    """Sign in at ``authorize_url`` up to the authority's answer (not delivered)."""
    resp = s.get(authorize_url, allow_redirects=False, timeout=timeout)
    credentials_sent = False
    for _ in range(MAX_STEPS):
        url = resp.url
        if resp.is_redirect and _same_origin(urljoin(url, resp.headers["Location"]), url):
            resp = s.get(urljoin(url, resp.headers["Location"]), allow_redirects=False,
                         timeout=timeout)
            continue
        found = answer_in(resp)
        if found is not None:
            if not found.location and not _is_loopback(found.url):
                raise SignInError(f"refusing to post the answer to a non-loopback {found.url!r}")
            return found
        forms, text = parse_page(resp.text)
        if resp.status_code >= 400:
            raise _page_error(text, resp.status_code)
        login = _login_form(forms)
        if login is not None:
            if credentials_sent:  # the form came back: wrong password or unknown user
                raise _page_error(text, resp.status_code)
            data = _filled(login, username, password)
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


def sign_in(
    authorize_url: str,
    username: str,
    password: str,
    *,
    session: requests.Session | None = None,
    timeout: float = 10.0,
    deliver: bool = True,
) -> Delivery:
    """Sign in at ``authorize_url`` and deliver the answer to the app; see the module doc.
    With ``deliver=False``, return the answer without delivering it (``status`` None)."""
    s = _session(session)
    found = _walk(s, authorize_url, username, password, timeout)
    if not deliver:
        return found
    how = "redirect" if found.location else "form_post"
    log.info("delivering the answer to %s by %s", urlsplit(found.url).netloc, how)
    if found.location:
        resp = s.get(found.location, allow_redirects=False, timeout=timeout)
    else:
        resp = _submit(s, found.url, Form(found.url, found.method), dict(found.fields), timeout)
    found.status = resp.status_code
    return found


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
    form = _login_form(forms)
    if form is None:
        raise SignInError(f"no approval form at the verification page: {text[:300]}")
    data = _filled(form, username, password) | {"user_code": user_code}
    resp = _submit(s, resp.url, form, data, timeout)
    if resp.is_redirect:
        resp = s.get(urljoin(resp.url, resp.headers["Location"]), timeout=timeout)
    forms, text = parse_page(resp.text)
    if resp.status_code >= 400 or _login_form(forms) is not None:
        raise _page_error(text, resp.status_code)
    return text


# --- the $BROWSER command -------------------------------------------------------------------


def browser_command() -> str:
    """The ``$BROWSER`` value that makes Python's webbrowser run this scripted user agent."""
    return f"{shlex.quote(sys.executable)} -m {MODULE} %s"


def browser_env(log_path: Path, *, username: str | None = None,
                password: str | None = None) -> dict[str, str]:
    """The variables that make ``$BROWSER`` this user agent, logging to ``log_path`` and
    signing in as ``username``/``password`` (if given; else the demo user)."""
    env = {BROWSER_VAR: browser_command(), config.UA_LOG: str(log_path)}
    if username is not None:
        env[config.UA_USERNAME] = username
    if password is not None:
        env[config.UA_PASSWORD] = password
    return env


def sign_ins(log: os.PathLike[str] | str) -> int:
    """How many sign-ins the ``$BROWSER`` user agent logged: ``log`` is its log file (a path;
    a missing file counts 0) or, as a ``str``, the log's text."""
    if isinstance(log, str):
        text = log
    else:
        path = Path(log)
        text = path.read_text(errors="replace") if path.exists() else ""
    return text.count(SIGNING_IN)


def _log_to(path: str | None) -> None:
    handler: logging.Handler = (
        logging.FileHandler(path, encoding="utf-8") if path else logging.NullHandler()
    )
    handler.setFormatter(logging.Formatter("%(asctime)s useragent[%(process)d] %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.INFO)


def _sign_in_from_env(url: str) -> int:
    _log_to(os.environ.get(config.UA_LOG))
    username = os.environ.get(config.UA_USERNAME) or DEFAULT_USERNAME
    password = os.environ.get(config.UA_PASSWORD) or DEFAULT_PASSWORD
    log.info("%s %s at %s", SIGNING_IN, username, urlsplit(url).netloc)
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
        prog=f"python -m {MODULE}",
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
        [sys.executable, "-m", MODULE, "--wait", args.url],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
        close_fds=True,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
