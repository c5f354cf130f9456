"""A toy Broker1 handler for the façade's tests, and a way to serve it in a thread or a process.

The toy answers from fixed data; scopes steer it: ``slow:<seconds>`` sleeps, ``needs-ui`` raises
status 2, ``crash`` raises an unexpected exception whose message holds a fake secret, and
interactive calls first announce a device code. Run as a script, it serves the toy on the
session bus like ``authbroker daemon`` would (``--idle-exit SECONDS`` supported).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import logging
import signal
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "src"))

from authbroker import ipc  # noqa: E402
from authbroker.daemon.api import CallContext, DeviceCodePrompt  # noqa: E402
from authbroker.daemon.service import BrokerService  # noqa: E402

OID, TID = "00000000-0000-0000-0000-0000000000a1", "00000000-0000-0000-0000-0000000000b2"
CLIENT_INFO = ipc.encode_client_info(OID, TID)
ACCOUNT = ipc.Account(
    home_account_id=f"{OID}.{TID}", local_account_id=OID, realm=TID,
    username="toy@contoso.example", name="Toy User", given_name="Toy", client_info=CLIENT_INFO,
)
CRASH_SECRET = "crash-secret-value-7f3a"


def _b64(obj: dict) -> str:
    return base64.urlsafe_b64encode(json.dumps(obj).encode()).rstrip(b"=").decode()


ID_TOKEN = f"{_b64({'alg': 'none'})}.{_b64({'preferred_username': ACCOUNT.username})}.sig"


def access_token_for(scopes: tuple[str, ...]) -> str:
    return "toy-at-" + "+".join(scopes)


class ToyHandler:
    def __init__(self) -> None:
        self.calls: list[tuple[ipc.Method, ipc.Request, CallContext]] = []
        self.closed = False

    async def handle(self, method: ipc.Method, request: ipc.Request,
                     ctx: CallContext) -> ipc.Result:
        self.calls.append((method, request, ctx))
        if method is ipc.Method.GET_ACCOUNTS:
            return ipc.AccountsResult((ACCOUNT,))
        if method.is_token_method:
            assert isinstance(request, ipc.TokenRequest)
            return await self._token(method, request, ctx)
        if method in (ipc.Method.REMOVE_ACCOUNT, ipc.Method.CANCEL_INTERACTIVE_FLOW):
            return ipc.OkResult()
        if method is ipc.Method.GET_LINUX_BROKER_VERSION:
            return ipc.VersionResult()
        raise ipc.BrokerError(ipc.Status.UNEXPECTED, f"{method.value} is not supported yet",
                              tag="toy.unsupported")

    async def _token(self, method: ipc.Method, request: ipc.TokenRequest,
                     ctx: CallContext) -> ipc.Result:
        scopes = request.auth.requested_scopes
        for scope in scopes:
            if scope.startswith("slow:"):
                await asyncio.sleep(float(scope.split(":", 1)[1]))
            elif scope == "needs-ui":
                raise ipc.BrokerError(ipc.Status.INTERACTION_REQUIRED, "toy: sign in first",
                                      error_code=50076, tag="toy.needs-ui")
            elif scope == "crash":
                raise RuntimeError(f"boom {CRASH_SECRET}")
        if method is ipc.Method.ACQUIRE_TOKEN_INTERACTIVELY:
            await ctx.announce_device_code(DeviceCodePrompt(
                verification_uri="https://127.0.0.1/devicelogin", user_code="TOYCODE1",
                message="To sign in, open https://127.0.0.1/devicelogin and enter TOYCODE1",
                expires_on=time.time() + 600))
        return ipc.TokenResult(
            access_token=access_token_for(scopes), id_token=ID_TOKEN, client_info=CLIENT_INFO,
            expires_on=time.time() + 3600, granted_scopes=scopes, account=ACCOUNT,
        )

    async def aclose(self) -> None:
        self.closed = True


class ServedToy:
    """A BrokerService serving a ToyHandler in a background thread with its own event loop."""

    def __init__(self, address: str, *, expected_uid: int | None = None,
                 bus_name: str = ipc.BUS_NAME) -> None:
        self.handler = ToyHandler()
        self.address = address
        self.expected_uid = expected_uid
        self.bus_name = bus_name
        self.loop = asyncio.new_event_loop()
        self.stop: asyncio.Event | None = None
        self.service: BrokerService | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_until_complete(self._main())

    async def _main(self) -> None:
        self.stop = asyncio.Event()
        self.service = BrokerService(self.handler, bus=self.address, bus_name=self.bus_name,
                                     expected_uid=self.expected_uid)
        try:
            await self.service.start()
        except BaseException as exc:
            self._error = exc
            self._ready.set()
            return
        self._ready.set()
        await self.service.run(self.stop)

    def __enter__(self) -> ServedToy:
        self.thread.start()
        if not self._ready.wait(10):
            raise TimeoutError("the toy broker did not start")
        if self._error is not None:
            raise self._error
        return self

    def __exit__(self, *exc: object) -> None:
        if self.stop is not None and self.thread.is_alive():
            self.loop.call_soon_threadsafe(self.stop.set)
        self.thread.join(10)
        self.loop.close()


@contextmanager
def served_toy(address: str, **kwargs: object) -> Iterator[ServedToy]:
    with ServedToy(address, **kwargs) as toy:  # type: ignore[arg-type]
        yield toy


async def _script_main(idle_exit: float | None) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    await BrokerService(ToyHandler(), idle_exit=idle_exit).run(stop)


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--idle-exit", type=float)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr)
    asyncio.run(_script_main(parser.parse_args().idle_exit))
