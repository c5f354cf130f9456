"""The silent path: the memo, identical calls sharing one msal call, the removal guard.

A silent result is kept in memory (``hot.py``) by its :class:`~authbroker.daemon.hot.SilentKey`
while more than 5 minutes remain (msal's own rule), so a memo hit never leaves the event loop;
concurrent identical silent requests (same key, same ``force``) share one msal call. A refresh
that finishes after its account was removed is undone and refused, so it never brings the
account back. A PoP request (``popParams``) is served the same way with an access token bound
to the account's PoP key, kept apart from bearer ones (memo entries keyed by the key's ``kid``,
its own msal partition); the caller's SHR over it is ``pop_calls.py``'s. When msal has no
token for a request (status 2), the device's Primary Refresh Token may serve it
(``prt_route``, ``prt_calls.py``). Blocking calls run
through the broker's executor (``run``).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from authbroker import broker1
from authbroker.daemon import audit
from authbroker.daemon.accounts import AccountTable
from authbroker.daemon.handler import CallContext
from authbroker.daemon.hot import HotTokens, SilentKey
from authbroker.daemon.msal_engine import TokenEngine
from authbroker.daemon.persistence import Persistence, Run
from authbroker.daemon.popkeys import PopKey, PopKeys
from authbroker.errors import BrokerStatusError

log = logging.getLogger(__name__)

#: A token and how it was served (audit.MEMO, CACHE, REFRESH, FAMILY, PRT or SIGN_IN).
Served = tuple[broker1.TokenResult, str]
#: What a shared silent call yields: Served, and the PoP key its token is bound to (or None).
Fetched = tuple[broker1.TokenResult, str, PopKey | None]
#: The PRT's last resort: (request, account, msal's status-2 error) -> Fetched, or raises.
PrtRoute = Callable[[broker1.AuthParameters, str, BrokerStatusError], Awaitable[Fetched]]


class SilentPath:
    """Silent token calls for one broker: its memo, its calls in flight, its removals."""

    def __init__(self, engine: TokenEngine, accounts: AccountTable, state: Persistence,
                 run: Run, pop_keys: PopKeys) -> None:
        self.engine = engine
        self.accounts = accounts
        self._state = state
        self._run = run
        self._pop_keys = pop_keys  # shared with pop_calls.py: kept here once a refresh lands
        self.hot = HotTokens()
        self._inflight: dict[tuple[SilentKey, bool], asyncio.Future[Fetched]] = {}
        self._removals: dict[str, int] = {}  # per account, bumped by removeAccount (_fetch)
        #: Serves a request msal could not (``PrtCalls.serve``), or raises the error given.
        self.prt_route: PrtRoute | None = None

    def key(self, auth: broker1.AuthParameters, home_account_id: str,
            ctx: CallContext) -> SilentKey:
        """The request's memo key (its authority resolved: a bad one is refused here)."""
        target = self.engine.target(auth)
        if log.isEnabledFor(logging.DEBUG):
            log.debug(
                "silent %s: authority %s -> %s, scopes %s, claims %r, renew %s, force %s, "
                "query %s", ctx.correlation_id, auth.authority, target.authority,
                list(auth.requested_scopes), auth.decoded_claims,
                bool(auth.access_token_to_renew), auth.force_refresh, sorted(auth.extra_query),
            )
        return SilentKey.of(auth, target.authority, home_account_id)

    async def serve(self, auth: broker1.AuthParameters, home_account_id: str, ctx: CallContext,
                    key: SilentKey, pop_key: PopKey | None) -> Fetched:
        """The memo's token if it may answer, else the (shared) msal call's. A PoP request
        is answered from the memo only when its account's key (``pop_key``) is known."""
        force = auth.force_refresh or bool(auth.access_token_to_renew)
        pop = auth.pop_params
        if not force and key.challenge is None and (pop is None or pop_key is not None):
            hot = self.hot.get(key if pop_key is None else key.bound(pop_key.kid))
            if hot is not None:
                if self._state.pending:
                    await self._state.flush()
                return hot, audit.MEMO, pop_key
        flight = (key, force)
        shared = self._inflight.get(flight)
        if shared is None:
            shared = asyncio.ensure_future(self._fetch(auth, home_account_id, ctx, key))
            self._inflight[flight] = shared
            shared.add_done_callback(lambda _f: self._inflight.pop(flight, None))
        return await asyncio.shield(shared)

    def removing(self, home_account_id: str) -> None:
        """``removeAccount`` began: a refresh of the account now in flight is refused."""
        self._removals[home_account_id] = self._removals.get(home_account_id, 0) + 1

    def forget(self, home_account_id: str) -> None:
        """The account is gone: its memo entries go too."""
        self.hot.forget_account(home_account_id)

    async def _served(self, auth: broker1.AuthParameters, home_account_id: str) -> Fetched:
        """msal's answer (its cache, a refresh token); when it has none (status 2), the
        device's PRT may serve (``prt_route``: ``prt_calls.PrtCalls.serve``)."""
        try:
            if auth.pop_params is None:
                result, how = await self._run(self.engine.serve_silent, auth, home_account_id)
                return result, how, None
            fetched: Fetched = await self._run(self.engine.serve_pop, auth, home_account_id)
            return fetched
        except BrokerStatusError as exc:
            if self.prt_route is None:
                raise
            return await self.prt_route(auth, home_account_id, exc)

    async def _fetch(
        self, auth: broker1.AuthParameters, home_account_id: str, ctx: CallContext,
        key: SilentKey,
    ) -> Fetched:
        removals = self._removals.get(home_account_id, 0)
        pop_key: PopKey | None = None
        try:
            result, how, pop_key = await self._served(auth, home_account_id)
            # removed meanwhile: the refresh must not bring the account back
            if self._removals.get(home_account_id, 0) != removals:
                await self._run(self.engine.remove_account, home_account_id)
                raise BrokerStatusError(
                    broker1.Status.INTERACTION_REQUIRED,
                    "the account was signed out while its token was being refreshed",
                    tag="core.silent.removed",
                )
        except BrokerStatusError as exc:
            log.info("silent %s for %s: status %d (%s)", ctx.correlation_id, auth.client_id,
                     int(exc.status), exc.context)
            raise
        if result.account and result.account.home_account_id not in self.accounts:
            self.accounts.seen(result.account)
            self._state.touch(result.account.home_account_id)
        log.info("silent %s for %s: %s token for %s", ctx.correlation_id, auth.client_id,
                 "PoP" if pop_key else "bearer", list(auth.requested_scopes))
        if pop_key is not None:
            self._pop_keys.keep(home_account_id, pop_key)
            key = key.bound(pop_key.kid)
        self.hot.keep(key, result)
        await self._state.flush()
        return result, how, pop_key
