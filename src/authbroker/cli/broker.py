"""``authbroker accounts | login | token | logout``: the broker daemon from the command line.

Each command is a client of the daemon (``BrokerClient``) like any other app. Only ``token``
writes a secret, and only to stdout (that is its purpose); everything else goes to stderr
except the requested listing. Errors: a message and a hint on stderr, exit status 1.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import datetime as dt
import json
import sys
import uuid
from collections.abc import Callable
from urllib.parse import urlsplit

from authbroker import broker1, config
from authbroker.client import BrokerClient
from authbroker.errors import (
    AuthBrokerError,
    BrokerProtocolError,
    BrokerStatusError,
    ConfigurationError,
)

#: Azure CLI's public client id: azure-identity's default, registered in every Entra tenant.
DEFAULT_CLIENT_ID = "04b07795-8ddb-461a-bbee-02f9e1bf7b46"
DEFAULT_LOGIN_SCOPE = "https://management.azure.com/.default"
EXIT_OK, EXIT_FAILED = 0, 1

_HINTS: dict[int, str] = {
    broker1.Status.INTERACTION_REQUIRED: "sign in first: authbroker login{scopes}",
    broker1.Status.ACCOUNT_UNUSABLE: "sign in again: authbroker login{scopes}",
    broker1.Status.ACCOUNT_NOT_FOUND: "see the signed-in accounts with: authbroker accounts",
    broker1.Status.USER_CANCELED: "the sign-in was cancelled; run the command again to retry",
    broker1.Status.NO_NETWORK: "check the network and the authority URL (--authority, "
    f"{config.AUTHORITY})",
    broker1.Status.SERVER_TEMPORARILY_UNAVAILABLE: "check the authority URL (--authority, "
    f"{config.AUTHORITY}) and that it is running",
    broker1.Status.INCORRECT_CONFIGURATION: "check the broker's configuration and log "
    "(journalctl --user -u authbroker-broker)",
}
_DEFAULT_HINT = "see the broker's log (journalctl --user -u authbroker-broker, or the stderr " \
    "of 'authbroker daemon')"


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--client-id", default=DEFAULT_CLIENT_ID, metavar="ID",
                        help=f"the application (client) id (default: {DEFAULT_CLIENT_ID}, "
                        "the Azure CLI's)")
    parser.add_argument("--timeout", type=float, default=broker1.CLIENT_CALL_TIMEOUT_S,
                        metavar="SECONDS", help="give up waiting for the broker after this long")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")


def _token_options(parser: argparse.ArgumentParser, *, scope_required: bool) -> None:
    parser.add_argument("--scope", action="append", required=scope_required, metavar="SCOPE",
                        help="a scope to request, e.g. https://storage.azure.com/.default "
                        "(repeat for several)")
    parser.add_argument("--authority", default="", metavar="URL",
                        help="authority URL, e.g. https://login.microsoftonline.com/<tenant> "
                        "(default: the broker's)")
    parser.add_argument("--username", default="", metavar="UPN",
                        help="which signed-in account to use (default: the broker's default)")


def build_parser(prog: str) -> argparse.ArgumentParser:
    """The parser of the command ``prog`` names (``authbroker token`` → ``token``)."""
    command = prog.split()[-1]
    if command not in _RUNNERS:
        raise ValueError(f"unknown command {command!r}")
    parser = argparse.ArgumentParser(prog=prog, description=_DESCRIPTIONS[command])
    parser.set_defaults(command=command)
    _common(parser)
    if command == "accounts":
        parser.add_argument("--output", choices=("table", "json"), default="table")
        parser.add_argument("--set-default", default="", metavar="USERNAME",
                            help="make this signed-in account the default one (the account "
                            "apps get when they ask for no account in particular)")
    elif command == "login":
        _token_options(parser, scope_required=False)
        parser.add_argument("--prompt", default="select_account",
                            choices=("select_account", "login", "consent", "none"),
                            help="the sign-in prompt behaviour (default: select_account)")
    elif command == "token":
        _token_options(parser, scope_required=True)
        parser.add_argument("--output", choices=("token", "json"), default="token",
                            help="just the token (default) or a JSON object")
        parser.add_argument("--force-refresh", action="store_true",
                            help="ignore a cached access token")
        parser.add_argument("--pop-url", default="", metavar="URL",
                            help="print a Proof-of-Possession token (a Signed HTTP Request) for "
                            "this resource URL instead of a bearer token")
        parser.add_argument("--pop-method", default="GET", metavar="METHOD",
                            help="the HTTP method the PoP token is for (default: GET)")
        parser.add_argument("--pop-nonce", default=None, metavar="NONCE",
                            help="the resource's nonce to sign (default: ask --pop-url for its "
                            "401 'WWW-Authenticate: PoP nonce' challenge first; '' signs none)")
    elif command == "logout":
        parser.add_argument("--username", default="", metavar="UPN",
                            help="the account to forget (needed when several are signed in)")
    return parser


def run(args: argparse.Namespace) -> int:
    runner = _RUNNERS[args.command]
    try:
        with BrokerClient(timeout=args.timeout) as client:
            return runner(client, args)
    except AuthBrokerError as exc:  # the one base the client raises
        _err(f"authbroker {args.command}: {_explain(exc, args)}")
    return EXIT_FAILED


def _explain(exc: AuthBrokerError, args: argparse.Namespace) -> str:
    """The error and what to do about it: a broker status first, by its hint table."""
    if isinstance(exc, BrokerStatusError):
        scopes = "".join(f" --scope {s}" for s in getattr(args, "scope", None) or [])
        hint = _HINTS.get(int(exc.status), _DEFAULT_HINT).format(scopes=scopes)
        status = exc.status.name if isinstance(exc.status, broker1.Status) else exc.status
        return f"{exc.context} (status {status})\n  hint: {hint}"
    return f"{exc.message}\n  hint: {exc.hint}" if exc.hint else exc.message


def _err(text: str) -> None:
    print(text, file=sys.stderr)


def _find_account(client: BrokerClient, args: argparse.Namespace) -> broker1.Account | None:
    """The account ``--username`` names (None: let the broker use its default)."""
    if not args.username:
        return None
    for account in client.get_accounts(args.client_id):
        if account.username.lower() == args.username.lower():
            return account
    raise BrokerStatusError(broker1.Status.ACCOUNT_NOT_FOUND,
                          f"{args.username} is not signed in to the broker",
                          tag="cli.account-not-found")


def _scopes(args: argparse.Namespace, default: list[str] | None = None) -> tuple[str, ...]:
    raw = args.scope or default or []
    return tuple(s for item in raw for s in item.split() if s)


def _accounts(client: BrokerClient, args: argparse.Namespace) -> int:
    if args.set_default:
        client.set_default_account(username=args.set_default)
        _err(f"the default account is now {args.set_default}")
    accounts = client.get_accounts(args.client_id)
    try:
        default = client.get_default_account()
        default_id = default.home_account_id if default else None
    except BrokerProtocolError:  # a broker without authbroker's own interface: first listed
        default_id = accounts[0].home_account_id if accounts else None
    if args.output == "json":
        print(json.dumps([{"username": a.username, "name": a.name,
                           "homeAccountId": a.home_account_id, "tenantId": a.realm,
                           "environment": a.environment,
                           "default": a.home_account_id == default_id} for a in accounts],
                         indent=2))
        return EXIT_OK
    if not accounts:
        _err("no accounts are signed in to the broker (sign in with: authbroker login)")
        return EXIT_OK
    width = max(len(a.username) for a in accounts)
    for account in accounts:
        marker = "*" if account.home_account_id == default_id else " "
        print(f"{marker} {account.username:<{width}}  {account.realm}  {account.name}".rstrip())
    return EXIT_OK


def _login(client: BrokerClient, args: argparse.Namespace) -> int:
    auth = broker1.AuthParameters(
        client_id=args.client_id, requested_scopes=_scopes(args, [DEFAULT_LOGIN_SCOPE]),
        authority=args.authority, username=args.username, is_sign_in=True, prompt=args.prompt,
    )
    correlation_id = str(uuid.uuid4())
    try:
        result = client.acquire_token_interactively(auth, correlation_id=correlation_id)
    except KeyboardInterrupt:  # Ctrl-C: end the broker's sign-in too, not just our wait
        with contextlib.suppress(AuthBrokerError), \
                BrokerClient(timeout=5) as other:
            other.cancel_interactive_flow(correlation_id=correlation_id)
        raise
    who = result.account.username if result.account else "(unknown account)"
    tenant = f" (tenant {result.account.realm})" if result.account else ""
    print(f"signed in as {who}{tenant}")
    return EXIT_OK


def _token(client: BrokerClient, args: argparse.Namespace) -> int:
    account = _find_account(client, args)
    auth = broker1.AuthParameters(
        client_id=args.client_id, requested_scopes=_scopes(args), authority=args.authority,
        account=account, username=account.username if account else "",
        is_sign_in=account is None, force_refresh=args.force_refresh,
    )
    pop = pop_params(args, account) if args.pop_url else None
    if pop is not None:
        auth = dataclasses.replace(auth, pop_params=pop)
    result = client.acquire_token_silently(auth)
    if pop is not None and result.access_token_type != broker1.AccessTokenType.POP:
        raise BrokerProtocolError("the broker answered a PoP request with a bearer token "
                                  "(it is not printed in place of a PoP token)")
    if args.output == "json":
        expires = dt.datetime.fromtimestamp(result.expires_on, dt.UTC)
        print(json.dumps({
            "accessToken": result.access_token,
            "tokenType": "pop" if result.access_token_type == broker1.AccessTokenType.POP
            else "Bearer",
            "expiresOn": expires.isoformat(timespec="seconds"),
            "expires_on": int(result.expires_on),
            "scopes": list(result.granted_scopes or auth.requested_scopes),
            "username": result.account.username if result.account else None,
            "tenant": result.account.realm if result.account else None,
            **({"pop": {"method": pop.http_method, "host": pop.uri_host, "path": pop.uri_path,
                        "nonce": pop.nonce}} if pop is not None else {}),
        }, indent=2))
    else:
        print(result.access_token)
    return EXIT_OK


def pop_params(args: argparse.Namespace, account: broker1.Account | None) -> broker1.PopParams:
    """The ``popParams`` of ``--pop-url``/``--pop-method``/``--pop-nonce``; without a nonce,
    the one the URL's 401 challenge asks for (none when it asks for none)."""
    url = urlsplit(args.pop_url)
    if url.scheme not in ("https", "http") or not url.netloc:
        raise ConfigurationError(f"--pop-url must be an http(s) URL, not {args.pop_url!r}",
                                 hint="e.g. --pop-url https://resource.example/api/items")
    method = args.pop_method.upper()
    nonce = args.pop_nonce if args.pop_nonce is not None else _challenged_nonce(args, method)
    return broker1.PopParams(http_method=method, uri_host=url.netloc, uri_path=url.path or "/",
                             nonce=nonce, home_account_id=account.home_account_id if account
                             else "")


def _challenged_nonce(args: argparse.Namespace, method: str) -> str:
    """One unauthenticated request to ``--pop-url``: the nonce of its PoP challenge, or ''."""
    import requests

    from authbroker.plugin.challenge import pop_nonce

    try:
        answer = requests.request(method, args.pop_url, timeout=min(args.timeout, 30),
                                  allow_redirects=False)
    except requests.RequestException as exc:
        raise ConfigurationError(
            f"cannot ask {args.pop_url} for its PoP nonce: {type(exc).__name__}",
            hint="check the URL, or give the nonce with --pop-nonce (or --pop-nonce '' for "
            "none)") from None
    nonce = pop_nonce(answer.headers.get("WWW-Authenticate")) if answer.status_code == 401 else None
    if nonce is None:
        _err(f"authbroker token: {args.pop_url} asked for no PoP nonce (HTTP "
             f"{answer.status_code}); signing without one")
    return nonce or ""


def _logout(client: BrokerClient, args: argparse.Namespace) -> int:
    accounts = client.get_accounts(args.client_id)
    if args.username:
        chosen = [a for a in accounts if a.username.lower() == args.username.lower()]
        if not chosen:
            _err(f"authbroker logout: {args.username} is not signed in "
                 f"(signed in: {', '.join(a.username for a in accounts) or 'nobody'})")
            return EXIT_FAILED
    elif len(accounts) > 1:
        _err("authbroker logout: several accounts are signed in; choose one with --username "
             f"({', '.join(a.username for a in accounts)})")
        return EXIT_FAILED
    else:
        chosen = accounts
    if not chosen:
        _err("no accounts are signed in to the broker")
        return EXIT_OK
    for account in chosen:
        client.remove_account(account, args.client_id)
        print(f"signed out {account.username}")
    return EXIT_OK


_RUNNERS: dict[str, Callable[[BrokerClient, argparse.Namespace], int]] = {
    "accounts": _accounts, "login": _login, "token": _token, "logout": _logout,
}
_DESCRIPTIONS = {
    "accounts": "List the accounts signed in to the broker (the default one is marked *), or "
    "choose the default one with --set-default.",
    "login": "Sign in through the broker (browser, or a device code shown here).",
    "token": "Print an access token from the broker, for scripts: "
    "TOKEN=$(authbroker token --scope https://storage.azure.com/.default)",
    "logout": "Make the broker forget an account and its refresh tokens.",
}
