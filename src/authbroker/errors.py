"""One error tree for authbroker. Each error says what the caller should do next."""

from __future__ import annotations


class AuthBrokerError(Exception):
    """Base of every authbroker error. ``hint`` tells the user what to do about it."""

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return f"{self.message} ({self.hint})" if self.hint else self.message


class ConfigurationError(AuthBrokerError):
    """A setting or file is wrong; fixing the configuration fixes the problem."""


class AuthorityUnreachableError(AuthBrokerError):
    """The identity provider could not be reached (network, TLS trust, wrong URL)."""


class InteractionRequiredError(AuthBrokerError):
    """No token can be had without the person signing in."""


class UserCancelledError(AuthBrokerError):
    """The person cancelled the sign-in."""


class SignInTimeoutError(AuthBrokerError):
    """The sign-in did not finish in time."""


class BrokerUnavailableError(AuthBrokerError):
    """No broker service answers on the session bus."""


class BrokerProtocolError(AuthBrokerError):
    """The broker answered with something the Broker1 protocol does not allow."""


class StoreError(AuthBrokerError):
    """The encrypted store could not be read or written."""
