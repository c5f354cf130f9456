"""The loopback redirect of a browser sign-in: an aiohttp listener on 127.0.0.1 that takes the
authorization response (query or ``form_post``) for one ``state`` and shows a closing page.

aiohttp is imported only while someone signs in, which keeps the idle daemon's memory low.
"""

from __future__ import annotations

import asyncio
import socket
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from aiohttp import web

_DONE_PAGE = (
    "<!doctype html><html><head><meta charset=utf-8><title>authbroker</title></head>"
    "<body><h1>{title}</h1><p>{text}</p></body></html>"
)


class LoopbackListener:
    """Receives the authorization response on http://localhost:PORT (bound to 127.0.0.1)."""

    def __init__(self) -> None:
        self.port = 0
        self.state = ""
        self._response: asyncio.Future[dict[str, str]] = (
            asyncio.get_running_loop().create_future()
        )
        self._runner: web.AppRunner | None = None

    async def start(self) -> None:
        from aiohttp import web  # only needed while someone signs in: keeps idle memory low

        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.bind(("127.0.0.1", 0))
        self.port = sock.getsockname()[1]
        await web.SockSite(self._runner, sock).start()

    async def _handle(self, request: web.Request) -> web.Response:
        from aiohttp import web

        params: dict[str, str] = dict(request.query)
        if request.method == "POST":
            params.update({k: str(v) for k, v in (await request.post()).items()})
        if params.get("state") != self.state or not ("code" in params or "error" in params):
            return web.Response(status=404, text="not found")
        if not self._response.done():
            self._response.set_result(params)
        ok = "code" in params
        page = _DONE_PAGE.format(
            title="Signed in" if ok else "Sign-in failed",
            text="You can close this window and return to your application."
            if ok
            else "Return to your application for details.",
        )
        return web.Response(text=page, content_type="text/html")

    async def response(self) -> dict[str, str]:
        return await self._response

    async def close(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
