"""Many sign-ins at once for the scale benchmark: a tiny ``$BROWSER`` that hands each authorize
URL to this process, where the scripted user agent signs in as the URL's ``login_hint``.

``python -m authbroker.devkit.useragent`` as ``$BROWSER`` costs two Python start-ups per
sign-in (about 0.4 s of CPU each time): 1,000 sign-ins would spend minutes starting
interpreters. Here ``$BROWSER`` is a two-line shell script that drops the URL into a spool
directory (written aside, then renamed, so a reader never sees half a URL) and returns at once;
a thread of this process picks it up and runs :func:`authbroker.devkit.useragent.sign_in` in a
small thread pool, as the user the daemon was asked to sign in (``login_hint``; the daemon puts
the request's username there), its cookies cleared each time (no account picker) but its
connections to the authority kept (no TLS handshake per page).
"""

from __future__ import annotations

import stat
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import TracebackType
from urllib.parse import parse_qs, urlsplit

import requests

from authbroker.devkit import useragent

_SCRIPT = """#!/bin/sh
printf '%s' "$1" > "{spool}/.$$.tmp" && mv "{spool}/.$$.tmp" "{spool}/$$.url"
"""
POLL_S = 0.005


class SignInRelay:
    """The ``$BROWSER`` of a daemon (:meth:`browser_env`) and the user agent behind it; a
    context manager. ``done`` and ``failures`` count the sign-ins it completed or could not."""

    def __init__(self, work: Path, password: str, ca_bundle: str, *, workers: int = 8) -> None:
        self.spool = work / "spool"
        self.script = work / "browser.sh"
        self.password, self.ca_bundle = password, ca_bundle
        self.done = 0
        self.failures: list[str] = []
        self._pool = ThreadPoolExecutor(workers, thread_name_prefix="relay-ua")
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._reader = threading.Thread(target=self._read, name="relay-spool", daemon=True)
        self._local = threading.local()
        self._sessions: list[requests.Session] = []

    def browser_env(self) -> dict[str, str]:
        return {useragent.BROWSER_VAR: f"{self.script} %s"}

    def __enter__(self) -> SignInRelay:
        self.spool.mkdir(parents=True, exist_ok=True)
        self.script.write_text(_SCRIPT.format(spool=self.spool))
        self.script.chmod(stat.S_IRWXU)
        self._reader.start()
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self._stop.set()
        self._reader.join(5)
        self._pool.shutdown(wait=True, cancel_futures=True)
        for session in self._sessions:
            session.close()

    def _read(self) -> None:
        while not self._stop.is_set():
            found = [p for p in self.spool.iterdir() if p.suffix == ".url"]
            for path in found:
                url = path.read_text()
                path.unlink()
                self._pool.submit(self._sign_in, url)
            if not found:
                time.sleep(POLL_S)

    def _session(self) -> requests.Session:
        """This thread's session (connections kept), its cookies cleared: a new person."""
        session: requests.Session | None = getattr(self._local, "session", None)
        if session is None:
            session = self._local.session = requests.Session()
            session.trust_env = False  # no proxies for loopback
            session.verify = self.ca_bundle
            self._sessions.append(session)
        session.cookies.clear()
        return session

    def _sign_in(self, url: str) -> None:
        hint = parse_qs(urlsplit(url).query).get("login_hint", [useragent.DEFAULT_USERNAME])[0]
        try:
            delivery = useragent.sign_in(url, hint, self.password, session=self._session(),
                                         timeout=60)
            outcome = delivery.error
        except (useragent.SignInError, requests.RequestException) as exc:
            outcome = f"{type(exc).__name__}: {exc}"[:300]
        with self._lock:
            if outcome:
                self.failures.append(f"{hint}: {outcome}")
            else:
                self.done += 1
