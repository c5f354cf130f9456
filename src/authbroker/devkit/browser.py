"""Headless Chromium for tests and the demo, driven over the DevTools protocol (aiohttp's
websocket client): set a cookie, open a URL, wait for where it lands, read the page.

Only the few CDP commands a sign-in check needs. The browser trusts one server certificate by
its public key (``--ignore-certificate-errors-spki-list``), not every certificate; it runs in a
profile directory of its own and is killed, with the profile, on close.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import itertools
import os
import re
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType
from typing import Any

import aiohttp
from cryptography import x509
from cryptography.hazmat.primitives import serialization

_DEVTOOLS = re.compile(r"DevTools listening on (ws://\S+)")


def chromium_path() -> str | None:
    """The machine's Chromium (Debian's ``chromium``), or None."""
    for name in ("chromium", "chromium-browser", "google-chrome"):
        found = shutil.which(name)
        if found:
            return found
    return None


def spki_hash(cert_pem: Path) -> str:
    """base64(SHA-256(SubjectPublicKeyInfo)) of a PEM certificate, as Chromium's flag wants."""
    cert = x509.load_pem_x509_certificate(Path(cert_pem).read_bytes())
    spki = cert.public_key().public_bytes(serialization.Encoding.DER,
                                          serialization.PublicFormat.SubjectPublicKeyInfo)
    return base64.b64encode(hashlib.sha256(spki).digest()).decode("ascii")


class Chromium:
    """``async with Chromium(trust=server_cert) as page: await page.navigate(url)``."""

    def __init__(self, *, trust: Path | None = None, timeout: float = 20.0) -> None:
        self.trust, self.timeout = trust, timeout
        self._proc: subprocess.Popen[str] | None = None
        self._profile = ""
        self._session: aiohttp.ClientSession | None = None
        self._ws: aiohttp.ClientWebSocketResponse | None = None
        self._ids = itertools.count(1)

    async def __aenter__(self) -> Chromium:
        exe = chromium_path()
        if exe is None:
            raise RuntimeError("chromium is not installed (Debian: apt-get install chromium)")
        self._profile = tempfile.mkdtemp(prefix="authbroker-chromium-")
        argv = [exe, "--headless=new", "--remote-debugging-port=0", "--no-first-run",
                "--disable-gpu", "--disable-extensions", "--disable-background-networking",
                f"--user-data-dir={self._profile}", "about:blank"]
        if self.trust is not None:
            argv.insert(1, f"--ignore-certificate-errors-spki-list={spki_hash(self.trust)}")
        if os.geteuid() == 0:
            argv.insert(1, "--no-sandbox")  # Chromium refuses to run its sandbox as root
        self._proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL,
                                      stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                      text=True)
        try:
            browser_ws = await asyncio.wait_for(asyncio.to_thread(self._devtools_url),
                                                self.timeout)
            self._session = aiohttp.ClientSession()
            port = browser_ws.split("//", 1)[1].split("/", 1)[0]
            async with self._session.get(f"http://{port}/json/list") as resp:
                pages = [t for t in await resp.json() if t.get("type") == "page"]
            self._ws = await self._session.ws_connect(pages[0]["webSocketDebuggerUrl"],
                                                      max_msg_size=0)
            await self.send("Page.enable")
            await self.send("Network.enable")
        except BaseException:
            await self.aclose()
            raise
        return self

    def _devtools_url(self) -> str:
        assert self._proc is not None and self._proc.stderr is not None
        for line in self._proc.stderr:
            found = _DEVTOOLS.search(line)
            if found:
                return found.group(1)
        raise RuntimeError("chromium exited before it opened its DevTools port")

    async def __aexit__(self, exc_type: type[BaseException] | None,
                        exc: BaseException | None, tb: TracebackType | None) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        if self._ws is not None:
            await self._ws.close()
        if self._session is not None:
            await self._session.close()
        if self._proc is not None:
            self._proc.kill()
            self._proc.wait(5)
            if self._proc.stderr is not None:
                self._proc.stderr.close()
        if self._profile:
            shutil.rmtree(self._profile, ignore_errors=True)

    async def send(self, method: str, **params: Any) -> dict[str, Any]:
        """One CDP command; its result (events that arrive meanwhile are dropped)."""
        assert self._ws is not None
        ident = next(self._ids)
        await self._ws.send_json({"id": ident, "method": method, "params": params})
        while True:
            msg = await asyncio.wait_for(self._ws.receive_json(), self.timeout)
            if msg.get("id") == ident:
                if "error" in msg:
                    raise RuntimeError(f"{method}: {msg['error'].get('message')}")
                return dict(msg.get("result", {}))

    async def set_cookie(self, url: str, name: str, value: str) -> None:
        result = await self.send("Network.setCookie", name=name, value=value, url=url,
                                 secure=True, httpOnly=True, sameSite="None")
        if not result.get("success", True):
            raise RuntimeError(f"chromium refused the cookie {name}")

    async def navigate(self, url: str) -> None:
        await self.send("Page.navigate", url=url)

    async def evaluate(self, expression: str) -> Any:
        result = await self.send("Runtime.evaluate", expression=expression, returnByValue=True)
        return result.get("result", {}).get("value")

    async def wait_for(self, predicate: str, timeout: float | None = None) -> str:
        """Poll until the JS ``predicate`` is true in a loaded page; the page's URL."""
        deadline = time.monotonic() + (timeout or self.timeout)
        while time.monotonic() < deadline:
            with _quiet():
                ready = await self.evaluate(
                    f"document.readyState === 'complete' && !!({predicate})")
                if ready:
                    return str(await self.evaluate("location.href"))
            await asyncio.sleep(0.1)
        raise TimeoutError(f"the page never satisfied {predicate!r}: "
                           f"{await self.evaluate('location.href')}")


class _quiet:
    """Ignore a CDP error while a navigation replaces the page's context."""

    def __enter__(self) -> None:
        return None

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> bool:
        return exc_type is RuntimeError
