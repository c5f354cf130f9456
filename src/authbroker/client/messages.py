"""The sans-I/O half of both clients: Broker1 D-Bus messages out, typed results in."""

from __future__ import annotations

import dataclasses
import json
import logging
import sys
import uuid
from collections.abc import Awaitable, Callable
from functools import partial
from typing import Any, TypeVar

from jeepney import DBusAddress, HeaderFields, MatchRule, Message, MessageType, new_method_call

from authbroker import broker1
from authbroker.broker1 import DeviceCodePrompt
from authbroker.broker1.memo import IdentityMemo, TextMemo
from authbroker.errors import BrokerProtocolError, BrokerUnavailableError

log = logging.getLogger("authbroker.client")

R = TypeVar("R", bound=broker1.Result)
DeviceCodeCallback = Callable[[DeviceCodePrompt], Awaitable[None] | None]

_START_HINT = "start it with 'authbroker daemon', or run 'authbroker install-service' once"


def print_device_code(prompt: DeviceCodePrompt) -> None:
    """The default ``on_device_code``: show the sign-in instructions on stderr."""
    print(prompt.message or f"To sign in, open {prompt.verification_uri} and enter the code "
          f"{prompt.user_code}", file=sys.stderr, flush=True)


class Broker1Messages:
    """Sans-I/O: Broker1 messages out, typed results in. Shared by both clients."""

    def __init__(self, bus_name: str = broker1.BUS_NAME) -> None:
        self.bus_name = bus_name
        # Asking again for a token repeats the same request and, from the broker's cache, the
        # same reply: neither is encoded or parsed twice (authbroker.broker1.memo).
        self._silent: IdentityMemo[broker1.TokenRequest] = IdentityMemo()
        self._encoded: IdentityMemo[str] = IdentityMemo()
        self._parsed: TextMemo[broker1.Result] = TextMemo()
        self.peer = DBusAddress(broker1.OBJECT_PATH, bus_name=bus_name,
                                interface=broker1.PEER_INTERFACE)
        self._addresses = {spec.interface: DBusAddress(broker1.OBJECT_PATH, bus_name=bus_name,
                                                       interface=spec.interface)
                           for spec in broker1.METHODS.values()}

    # -- requests
    def call(self, method: broker1.AnyMethod, request: broker1.Request,
             correlation_id: str | None = None) -> tuple[str, Message]:
        """A call of ``method`` on its interface, with its arguments (``broker1.METHODS``)."""
        spec = broker1.METHODS[method]
        correlation_id = correlation_id or str(uuid.uuid4())
        request_json = self._encoded.get(request, lambda r: broker1.encode(r.to_wire()))
        args = {"protocol_version": broker1.PROTOCOL_VERSION, "correlation_id": correlation_id,
                "request_json": request_json}
        body = tuple(args[name] for name in spec.arg_names)
        return correlation_id, new_method_call(self._addresses[spec.interface], method.value,
                                               spec.signature, body)

    @staticmethod
    def default_request(home_account_id: str = "",
                        username: str = "") -> broker1.SetDefaultAccountRequest:
        if bool(home_account_id) == bool(username):
            raise ValueError("name the account by exactly one of home_account_id or username")
        return broker1.SetDefaultAccountRequest(home_account_id=home_account_id, username=username)

    @staticmethod
    def signed_http_request(client_id: str, pop_params: broker1.PopParams,
                            home_account_id: str = "") -> broker1.SignedHttpRequestRequest:
        """A ``generateSignedHttpRequest`` request; ``home_account_id`` (if given) names the
        account in place of ``pop_params.home_account_id``."""
        if home_account_id:
            pop_params = dataclasses.replace(pop_params, home_account_id=home_account_id)
        if not pop_params.home_account_id:
            raise ValueError("name the account: home_account_id (or pop_params.home_account_id)")
        return broker1.SignedHttpRequestRequest(client_id, pop_params)

    @staticmethod
    def prt_sso_cookie_request(account: broker1.Account | None = None, sso_url: str = "",
                               client_id: str = "",
                               authority: str = "") -> broker1.PrtSsoCookieRequest:
        """An ``acquirePrtSsoCookie`` request (``account`` None: the broker's default)."""
        return broker1.PrtSsoCookieRequest(account=account, sso_url=sso_url,
                                           client_id=client_id, authority=authority)

    @staticmethod
    def silent_request(auth: broker1.AuthParameters) -> broker1.TokenRequest:
        auth = dataclasses.replace(
            auth, authorization_type=broker1.AuthorizationType.CACHED_REFRESH_TOKEN)
        return broker1.TokenRequest(auth=auth)

    def silent(self, auth: broker1.AuthParameters) -> broker1.TokenRequest:
        """:meth:`silent_request`, the same object for the same ``auth``."""
        return self._silent.get(auth, self.silent_request)

    @staticmethod
    def interactive_request(auth: broker1.AuthParameters,
                            parent_window_handle: int) -> broker1.TokenRequest:
        auth = dataclasses.replace(auth, authorization_type=broker1.AuthorizationType.INTERACTIVE,
                                   parent_window=parent_window_handle,
                                   is_sign_in=auth.account is None or auth.is_sign_in)
        return broker1.TokenRequest(auth=auth, parent_window_handle=parent_window_handle)

    def interactive(self, auth: broker1.AuthParameters, parent_window_handle: int,
                    correlation_id: str | None) -> tuple[Message, MatchRule, MatchRule]:
        """An interactive sign-in: (message, bus rule, local rule) as in :meth:`prompt_rules`."""
        request = self.interactive_request(auth, parent_window_handle)
        return self.prompting(broker1.Method.ACQUIRE_TOKEN_INTERACTIVELY, request,
                              correlation_id)

    def prompting(self, method: broker1.AnyMethod, request: broker1.Request,
                  correlation_id: str | None) -> tuple[Message, MatchRule, MatchRule]:
        """A call that may show device-code prompts (a sign-in, a device registration):
        (message, bus rule, local rule) as in :meth:`prompt_rules`."""
        cid, msg = self.call(method, request, correlation_id)
        return (msg, *self.prompt_rules(cid))

    @staticmethod
    def register_device_request(
        *, authority: str = "", tenant: str = "", device_name: str = "",
        use_device_code: bool = False, home_account_id: str = "",
    ) -> broker1.RegisterDeviceRequest:
        return broker1.RegisterDeviceRequest(authority=authority, tenant=tenant,
                                             device_name=device_name,
                                             use_device_code=use_device_code,
                                             home_account_id=home_account_id)

    def ping(self) -> Message:
        return new_method_call(self.peer, "Ping")

    def prompt_rules(self, correlation_id: str) -> tuple[MatchRule, MatchRule]:
        """(rule for the bus's AddMatch, rule for the local filter) of one call's prompts.

        The bus resolves ``sender`` from the well-known name to its owner; the local filter
        sees the owner's unique name, so it matches on the correlation id instead.
        """
        def rule(sender: str | None) -> MatchRule:
            r = MatchRule(type="signal", sender=sender, interface=broker1.EXTENSION_INTERFACE,
                          member=broker1.DEVICE_CODE_SIGNAL, path=broker1.OBJECT_PATH)
            r.add_arg_condition(0, correlation_id)
            return r
        return rule(self.bus_name), rule(None)

    # -- replies
    @staticmethod
    def prompt(signal: Message) -> DeviceCodePrompt | None:
        try:
            obj = json.loads(signal.body[1])
            return DeviceCodePrompt.from_wire(obj) if isinstance(obj, dict) else None
        except (ValueError, IndexError, TypeError):
            return None

    @staticmethod
    def check(reply: Message, what: str) -> tuple[Any, ...]:
        """The body of a method return; bus errors become authbroker errors."""
        if reply.header.message_type is MessageType.error:
            name = reply.header.fields.get(HeaderFields.error_name, "")
            text = reply.body[0] if reply.body and isinstance(reply.body[0], str) else ""
            if broker1.is_unavailable_error(name):
                raise BrokerUnavailableError(f"no broker answered {what} ({name})",
                                             hint=_START_HINT)
            raise BrokerProtocolError(f"the broker failed {what} with D-Bus error {name}: {text}")
        return tuple(reply.body)

    def result(self, method: broker1.AnyMethod, reply: Message, expected: type[R]) -> R:
        """The reply's result, which must be an ``expected``."""
        body = self.check(reply, method.value)
        if len(body) != 1 or not isinstance(body[0], str):
            raise BrokerProtocolError(f"the broker's {method.value} reply is not one string")
        try:
            result = self._parsed.get(method, body[0], partial(broker1.parse_response, method))
        except BrokerProtocolError as exc:
            raise BrokerProtocolError(f"the broker's {method.value} reply is malformed: {exc}") \
                from None
        if not isinstance(result, expected):
            raise BrokerProtocolError(f"unexpected reply type {type(result).__name__}")
        return result

    @staticmethod
    def timed_out(what: str, timeout: float) -> BrokerUnavailableError:
        return BrokerUnavailableError(f"the broker did not answer {what} within {timeout:g} s",
                                      hint="see the broker's log (journalctl --user -u "
                                      "authbroker-broker)")

    @staticmethod
    def no_bus(exc: BaseException) -> BrokerUnavailableError:
        return BrokerUnavailableError(
            f"cannot connect to the D-Bus session bus ({type(exc).__name__}: {exc})",
            hint="is DBUS_SESSION_BUS_ADDRESS set? the broker needs a desktop or "
            "'dbus-run-session'")

    @staticmethod
    def lost(exc: BaseException) -> BrokerUnavailableError:
        return BrokerUnavailableError(f"lost the D-Bus connection ({type(exc).__name__})")


class _ClientSettings:
    """What both clients are made with: the bus, the call timeout, the broker's name."""

    def __init__(self, *, bus: str = "SESSION", timeout: float = broker1.CLIENT_CALL_TIMEOUT_S,
                 bus_name: str = broker1.BUS_NAME) -> None:
        self.bus = bus
        self.timeout = timeout
        self.messages = Broker1Messages(bus_name)

