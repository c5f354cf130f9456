"""``BrokerClient``: the blocking Broker1 client (one jeepney connection, no event loop)."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from typing import Any

from jeepney import HeaderFields, MatchRule, Message
from jeepney.bus_messages import message_bus
from jeepney.io import blocking as jblocking

from authbroker import broker1
from authbroker.broker1 import DeviceCodePrompt
from authbroker.client.messages import R, _ClientSettings, log, print_device_code
from authbroker.errors import BrokerProtocolError, BrokerUnavailableError


class BrokerClient(_ClientSettings):
    """Blocking client. Use as a context manager, or call :meth:`close`."""

    _conn: jblocking.DBusConnection | None = None

    def __enter__(self) -> BrokerClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.close()

    def _connection(self) -> jblocking.DBusConnection:
        if self._conn is None:
            try:
                self._conn = jblocking.open_dbus_connection(self.bus)
            except (OSError, KeyError, ValueError, TimeoutError) as exc:
                raise self.messages.no_bus(exc) from None
        return self._conn

    def _roundtrip(self, msg: Message, what: str, timeout: float | None = None,
                   on_signal: Callable[[Message], None] | None = None,
                   signal_rule: MatchRule | None = None) -> Message:
        conn = self._connection()
        timeout = self.timeout if timeout is None else timeout
        deadline = time.monotonic() + timeout
        serial = next(conn.outgoing_serial)
        try:
            conn.send(msg, serial=serial)
            while True:
                incoming = conn.receive(timeout=max(0.0, deadline - time.monotonic()))
                if incoming.header.fields.get(HeaderFields.reply_serial) == serial:
                    return incoming
                if on_signal is not None and signal_rule is not None \
                        and signal_rule.matches(incoming):
                    on_signal(incoming)
        except TimeoutError:
            self.close()  # a late reply must not be taken for the next call's
            raise self.messages.timed_out(what, timeout) from None
        except (OSError, EOFError) as exc:
            self.close()
            raise self.messages.lost(exc) from None

    def _bus(self, method: str, *args: Any) -> tuple[Any, ...]:
        msg = getattr(message_bus, method)(*args)
        return self.messages.check(self._roundtrip(msg, method, min(self.timeout, 25.0)), method)

    def _call(self, method: broker1.AnyMethod, request: broker1.Request, expected: type[R],
              correlation_id: str | None = None) -> R:
        _cid, msg = self.messages.call(method, request, correlation_id)
        return self.messages.result(method, self._roundtrip(msg, method.value), expected)

    # -- API
    def ping(self) -> float:
        """Ping the broker (starting it if it is activatable); the round trip in seconds."""
        started = time.monotonic()
        self.messages.check(self._roundtrip(self.messages.ping(), "Ping"), "Ping")
        return time.monotonic() - started

    def is_available(self) -> bool:
        """Whether a broker owns the name or the bus can start one."""
        try:
            names = set(self._bus("ListNames")[0]) | set(self._bus("ListActivatableNames")[0])
        except BrokerUnavailableError:
            return False
        return self.messages.bus_name in names

    def get_accounts(self, client_id: str) -> list[broker1.Account]:
        """Every account signed in to the broker, whatever ``client_id`` (brokers share
        accounts between apps), the default one first."""
        result = self._call(broker1.Method.GET_ACCOUNTS, broker1.GetAccountsRequest(client_id),
                            broker1.AccountsResult)
        return list(result.accounts)

    def acquire_token_silently(self, auth: broker1.AuthParameters) -> broker1.TokenResult:
        return self._call(broker1.Method.ACQUIRE_TOKEN_SILENTLY, self.messages.silent(auth),
                          broker1.TokenResult)

    def acquire_token_interactively(
        self, auth: broker1.AuthParameters, parent_window_handle: int = 1,
        on_device_code: Callable[[DeviceCodePrompt], None] | None = print_device_code,
        correlation_id: str | None = None,
    ) -> broker1.TokenResult:
        """Sign in; ``correlation_id`` lets another client cancel this very call."""
        method = broker1.Method.ACQUIRE_TOKEN_INTERACTIVELY
        msg, bus_rule, local_rule = self.messages.interactive(auth, parent_window_handle,
                                                           correlation_id)
        return self._prompting(method, msg, bus_rule, local_rule, on_device_code,
                               broker1.TokenResult)

    def _prompting(self, method: broker1.AnyMethod, msg: Message, bus_rule: MatchRule,
                   local_rule: MatchRule,
                   on_device_code: Callable[[DeviceCodePrompt], None] | None,
                   expected: type[R]) -> R:
        """A call that may show device-code prompts: they go to ``on_device_code``."""
        def on_signal(signal: Message) -> None:
            prompt = self.messages.prompt(signal)
            if prompt is not None and on_device_code is not None:
                try:
                    on_device_code(prompt)
                except Exception as exc:
                    log.warning("on_device_code failed: %s", type(exc).__name__)

        self._bus("AddMatch", bus_rule)
        try:
            reply = self._roundtrip(msg, method.value, on_signal=on_signal, signal_rule=local_rule)
        finally:
            if self._conn is not None:
                with contextlib.suppress(Exception):
                    self._bus("RemoveMatch", bus_rule)
        return self.messages.result(method, reply, expected)

    def remove_account(self, account: broker1.Account, client_id: str = "") -> None:
        self._call(broker1.Method.REMOVE_ACCOUNT, broker1.RemoveAccountRequest(account, client_id),
                   broker1.OkResult)

    def generate_signed_http_request(self, client_id: str, pop_params: broker1.PopParams,
                                     home_account_id: str = "") -> str:
        """A Signed HTTP Request (no ``at``) for ``pop_params``' HTTP request, signed with the
        account's PoP key (``home_account_id``, else ``pop_params.home_account_id``)."""
        request = self.messages.signed_http_request(client_id, pop_params, home_account_id)
        return self._call(broker1.Method.GENERATE_SIGNED_HTTP_REQUEST, request,
                          broker1.SignedHttpRequestResult).signed_http_request

    def acquire_prt_sso_cookie(self, account: broker1.Account | None = None, sso_url: str = "",
                               client_id: str = "",
                               authority: str = "") -> broker1.PrtSsoCookieResult:
        """The browser SSO cookie (``x-ms-RefreshTokenCredential``) from the device's PRT for
        ``account`` (None: the default one); an ``sso_url`` carrying ``sso_nonce`` (a nonce
        challenge) has it signed into the cookie. Status 17 when no device is registered."""
        request = self.messages.prt_sso_cookie_request(account, sso_url, client_id, authority)
        return self._call(broker1.Method.ACQUIRE_PRT_SSO_COOKIE, request,
                          broker1.PrtSsoCookieResult)

    def cancel_interactive_flow(self, correlation_id: str | None = None) -> None:
        """Cancel this connection's sign-ins, or the one started with ``correlation_id``."""
        self._call(broker1.Method.CANCEL_INTERACTIVE_FLOW, broker1.CancelRequest(),
                   broker1.OkResult,
                   correlation_id)

    def get_linux_broker_version(self, client_id: str = "") -> str:
        result = self._call(broker1.Method.GET_LINUX_BROKER_VERSION,
                            broker1.OpaqueRequest({"clientId": client_id}), broker1.VersionResult)
        return result.version

    def set_default_account(self, *, home_account_id: str = "", username: str = "") -> None:
        """Make a signed-in account the one ``account: null`` sign-ins get (authbroker only).

        ``BrokerStatusError`` (status ACCOUNT_NOT_FOUND) when no such account is signed in.
        """
        request = self.messages.default_request(home_account_id, username)
        self._call(broker1.UiMethod.SET_DEFAULT_ACCOUNT, request, broker1.OkResult)

    def get_default_account(self) -> broker1.Account | None:
        """The account ``account: null`` sign-ins get, if any (authbroker only)."""
        result = self._call(broker1.UiMethod.GET_DEFAULT_ACCOUNT, broker1.OpaqueRequest(),
                            broker1.DefaultAccountResult)
        return result.account

    def get_status(self) -> broker1.StatusResult:
        """The accounts, the default one and the running sign-ins, with their device codes
        (authbroker only)."""
        return self._call(broker1.UiMethod.GET_STATUS, broker1.OpaqueRequest(),
                          broker1.StatusResult)


    def register_device(
        self, *, authority: str = "", tenant: str = "", device_name: str = "",
        use_device_code: bool = False, home_account_id: str = "",
        on_device_code: Callable[[DeviceCodePrompt], None] | None = print_device_code,
        correlation_id: str | None = None,
    ) -> broker1.DeviceStatus:
        """Register this device (one interactive sign-in, like
        :meth:`acquire_token_interactively`, and its timeout); the device as registered
        (authbroker only). ``correlation_id`` lets another client cancel its sign-in."""
        request = self.messages.register_device_request(
            authority=authority, tenant=tenant, device_name=device_name,
            use_device_code=use_device_code, home_account_id=home_account_id)
        method = broker1.UiMethod.REGISTER_DEVICE
        msg, bus_rule, local_rule = self.messages.prompting(method, request, correlation_id)
        result = self._prompting(method, msg, bus_rule, local_rule, on_device_code,
                                 broker1.DeviceStatusResult)
        if result.device is None:
            raise BrokerProtocolError("the broker's RegisterDevice reply names no device")
        return result.device

    def get_device_status(self) -> broker1.DeviceStatus | None:
        """The registered device (never its keys), None when none is (authbroker only)."""
        return self._call(broker1.UiMethod.GET_DEVICE_STATUS, broker1.OpaqueRequest(),
                          broker1.DeviceStatusResult).device

    def unregister_device(self, *, local_only: bool = False) -> broker1.UnregisterDeviceResult:
        """Delete the device at the authority (unless ``local_only``) and here."""
        return self._call(broker1.UiMethod.UNREGISTER_DEVICE,
                          broker1.UnregisterDeviceRequest(local_only),
                          broker1.UnregisterDeviceResult)
