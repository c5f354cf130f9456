"""The browser side: ``/{tenant}/oauth2/v2.0/authorize`` and its v1 alias (sign-in, account
picker, SSO by browser session or by a device's ``x-ms-RefreshTokenCredential``) and the
device-code approval page ``/devicelogin``."""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from aiohttp import web

from authbroker.authority import errors, pages, sso_credential
from authbroker.authority.directory import User
from authbroker.authority.errors import EntraError
from authbroker.authority.flows import CodeRecord, Transaction
from authbroker.authority.minting import client_info
from authbroker.authority.scopes import parse_claims, parse_scopes
from authbroker.authority.state import AuthorityState, authority_of

log = logging.getLogger(__name__)

SESSION_COOKIE = "authbroker_session"
BAD_PASSWORD = "Your account or password is incorrect."


class PageError(Exception):
    """An error shown to the person (the redirect URI cannot be trusted yet)."""

    def __init__(self, error: EntraError) -> None:
        super().__init__(error.error)
        self.entra = error


def _first(params: Mapping[str, object]) -> dict[str, str]:
    """One value per name (the first), as Entra reads repeated parameters."""
    out: dict[str, str] = {}
    for key, value in params.items():
        out.setdefault(key, str(value))
    return out


def _error_page(error: EntraError) -> web.Response:
    text = error.body()["error_description"]
    return web.Response(
        text=pages.error("Sorry, but we're having trouble signing you in.", text),
        content_type="text/html", status=400,
    )


def deliver(params: dict[str, str], fields: dict[str, str]) -> web.Response:
    """Send the authorize result to the (validated) redirect URI in the requested mode."""
    redirect_uri = params["redirect_uri"]
    if "state" in params:
        fields = {**fields, "state": params["state"]}
    mode = params.get("response_mode", "query")
    if mode == "form_post":
        return web.Response(text=pages.form_post(redirect_uri, fields), content_type="text/html",
                            headers={"Cache-Control": "no-store"})
    parts = urlsplit(redirect_uri)
    if mode == "fragment":
        location = urlunsplit(parts._replace(fragment=urlencode(fields)))
    else:
        query = parse_qsl(parts.query, keep_blank_values=True) + list(fields.items())
        location = urlunsplit(parts._replace(query=urlencode(query)))
    return web.Response(status=302, headers={"Location": location, "Cache-Control": "no-store"})


def deliver_error(params: dict[str, str], error: EntraError) -> web.Response:
    body = error.body()
    return deliver(params, {
        "error": error.error, "error_description": body["error_description"],
        "error_uri": body["error_uri"],
    })


def _v1_resource(request: web.Request, params: dict[str, str]) -> dict[str, str]:
    """The v1 endpoint names a ``resource``, not scopes: it asks for ``<resource>/.default``
    (and ``openid``), as Entra's v1 endpoint answers a v1 client."""
    resource = params.get("resource", "").strip()
    if "/v2.0/" in request.path or not resource or params.get("scope"):
        return params
    return {**params, "scope": f"{resource.rstrip('/')}/.default openid"}


def _validate(st: AuthorityState, segment: str, params: dict[str, str]) -> None:
    """Checks whose failure must not go to the redirect URI, then the ones that may."""
    try:
        st.tenant(segment)
        for name in ("client_id", "redirect_uri"):
            if not params.get(name):
                raise errors.missing_parameter(name)
        st.check_client(params["client_id"])
        if not st.clients.redirect_allowed(params["client_id"], params["redirect_uri"]):
            raise errors.bad_redirect_uri(params["redirect_uri"][:300], params["client_id"][:100])
        if params.get("response_mode", "query") not in ("query", "form_post", "fragment"):
            raise errors.malformed_request("response_mode must be query, fragment or form_post")
    except EntraError as exc:
        raise PageError(exc) from None
    if params.get("response_type") != "code":
        raise errors.unsupported_response_type(params.get("response_type", ""))
    if not params.get("code_challenge") or params.get("code_challenge_method") != "S256":
        raise errors.pkce_required_at_authorize()
    parse_scopes(params.get("scope"))
    parse_claims(params.get("claims"))


def _issue(st: AuthorityState, params: dict[str, str], user: User, auth_time: int, *,
           amr: tuple[str, ...] = ("pwd",), device_id: str | None = None) -> web.Response:
    record = CodeRecord(
        client_id=params["client_id"], redirect_uri=params["redirect_uri"],
        code_challenge=params["code_challenge"], user=user, scope=params.get("scope", ""),
        nonce=params.get("nonce"), auth_time=auth_time, claims=parse_claims(params.get("claims")),
        amr=amr, device_id=device_id,
    )
    code = st.flows.issue_code(record)
    log.info("signed in %s for client %s", user.username, params["client_id"][:60])
    return deliver(params, {"code": code, "client_info": client_info(user)})


def _session_accounts(
    st: AuthorityState, request: web.Request, tx: Transaction,
) -> dict[str, int]:
    """Accounts signed in in this browser that may be used for this request."""
    session = st.flows.session(request.cookies.get(SESSION_COOKIE))
    if session is None:
        return {}
    scope = st.tenant(tx.tenant_segment)
    max_age = tx.params.get("max_age", "")
    now = int(time.time())
    usable = {}
    for username, auth_time in session.accounts.items():
        user = st.directory.user(username)
        if user is None or not scope.admits(user, passthrough=tx.passthrough):
            continue
        if max_age.isdigit() and now - auth_time > int(max_age):
            continue
        usable[username] = auth_time
    return usable


def _sign_in_page(
    request: web.Request, tx_id: str, tx: Transaction, *, username: str = "",
    error: str | None = None,
) -> web.Response:
    return web.Response(
        text=pages.sign_in(request.path, tx_id, username=username, error=error,
                           app=tx.params.get("client_id", "")),
        content_type="text/html", headers={"Cache-Control": "no-store"},
    )


async def authorize_get(request: web.Request) -> web.Response:
    st = authority_of(request)
    segment = request.match_info["tenant"]
    params = _v1_resource(request, _first(request.query))
    try:
        _validate(st, segment, params)
    except PageError as exc:
        return _error_page(exc.entra)
    except EntraError as exc:
        return deliver_error(params, exc)
    tx = Transaction(
        params=params, tenant_segment=segment,
        passthrough=params.get("msal_request_type") == "consumer_passthrough",
    )
    prompt = params.get("prompt", "")
    credential = sso_credential.presented(request)
    if credential and prompt not in ("login", "create", "select_account"):
        answer = _device_sign_in(st, request, tx, credential)
        if answer is not None:
            return answer
    accounts = _session_accounts(st, request, tx)
    hint = params.get("login_hint", "").strip().lower()
    if prompt == "none":
        chosen = hint if hint in accounts else (next(iter(accounts)) if len(accounts) == 1 and
                                                 not hint else None)
        if chosen is None:
            return deliver_error(params, errors.interaction_required())
        return _issue(st, params, _user(st, chosen), accounts[chosen])
    if prompt not in ("login", "create", "select_account"):
        if hint in accounts:
            return _issue(st, params, _user(st, hint), accounts[hint])
        if len(accounts) == 1 and not hint:
            only = next(iter(accounts))
            return _issue(st, params, _user(st, only), accounts[only])
    tx_id = st.flows.begin(tx)
    if accounts and prompt not in ("login", "create"):
        return web.Response(
            text=pages.account_picker(request.path, tx_id, sorted(accounts)),
            content_type="text/html", headers={"Cache-Control": "no-store"},
        )
    return _sign_in_page(request, tx_id, tx, username=hint)


def _device_sign_in(st: AuthorityState, request: web.Request, tx: Transaction,
                    credential: str) -> web.Response | None:
    """A code for the PRT's user, or a nonce challenge; None: continue as without it."""
    verdict = sso_credential.evaluate(st, credential)
    if verdict.action == "challenge" and not sso_credential.challenged_before(st, tx.params):
        return sso_credential.challenge(st, request)
    if verdict.action != "sign_in" or verdict.session is None:
        return None
    record = verdict.session.record
    user = st.directory.user(record.username)
    if user is None or not st.tenant(tx.tenant_segment).admits(user, passthrough=tx.passthrough):
        return None
    log.info("signed in by the PRT credential of device %s", record.device_id)
    return _issue(st, tx.params, user, record.auth_time, amr=record.amr,
                  device_id=record.device_id)


def _user(st: AuthorityState, username: str) -> User:
    user = st.directory.user(username)
    assert user is not None  # accounts come from _session_accounts, which checked
    return user


async def authorize_post(request: web.Request) -> web.Response:
    st = authority_of(request)
    form = _first(await request.post())
    tx_id = form.get("tx", "")
    tx = st.flows.transactions.get(tx_id) if tx_id else None
    if tx is None:
        return web.Response(
            text=pages.error("Sign-in expired", "This sign-in page has expired. Go back to the "
                             "application and start again."),
            content_type="text/html", status=400,
        )
    if "account" in form:
        chosen = form["account"].strip().lower()
        accounts = _session_accounts(st, request, tx)
        if chosen in accounts:
            st.flows.transactions.pop(tx_id)
            return _issue(st, tx.params, _user(st, chosen), accounts[chosen])
        return _sign_in_page(request, tx_id, tx, username=chosen)
    username = form.get("username", "").strip()
    user = st.directory.authenticate(username, form.get("password", ""))
    if user is None:
        log.info("sign-in failed for a user at the sign-in page")
        return _sign_in_page(request, tx_id, tx, username=username, error=BAD_PASSWORD)
    if not st.tenant(tx.tenant_segment).admits(user, passthrough=tx.passthrough):
        return _sign_in_page(
            request, tx_id, tx, username=username,
            error=f"AADSTS50020: The account {user.username} cannot be used to sign in here.",
        )
    st.flows.transactions.pop(tx_id)
    auth_time = int(time.time())
    cookie = st.flows.remember(request.cookies.get(SESSION_COOKIE), user, auth_time)
    response = _issue(st, tx.params, user, auth_time)
    response.set_cookie(SESSION_COOKIE, cookie, path="/", secure=True, httponly=True,
                        samesite="Lax")
    return response


async def devicelogin_get(request: web.Request) -> web.Response:
    return web.Response(
        text=pages.device_login(request.path, user_code=request.query.get("user_code", "")),
        content_type="text/html", headers={"Cache-Control": "no-store"},
    )


async def devicelogin_post(request: web.Request) -> web.Response:
    st = authority_of(request)
    form = _first(await request.post())
    user_code, username = form.get("user_code", "").strip(), form.get("username", "").strip()

    def again(message: str) -> web.Response:
        page = pages.device_login(request.path, user_code=user_code, username=username,
                                  error=message)
        return web.Response(text=page, content_type="text/html")

    record = st.flows.pending_device(user_code) if user_code else None
    if record is None:
        return again("That code is not valid or has expired. Check the code on your device.")
    user = st.directory.authenticate(username, form.get("password", ""))
    if user is None:
        return again(BAD_PASSWORD)
    scope = st.directory.tenant_scope(record.tenant_segment)
    if scope is None or not scope.admits(user, passthrough=False):
        return again(f"AADSTS50020: The account {user.username} cannot be used to sign in here.")
    record.user, record.auth_time = user, int(time.time())
    log.info("device code approved by %s", user.username)
    return web.Response(text=pages.device_done(user.username), content_type="text/html")
