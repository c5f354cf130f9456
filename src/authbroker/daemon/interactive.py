"""The interactive path: sign-ins run, listed and cancelled; the account signed in adopted.

A sign-in gets a fresh msal application with a cache of its own (the account it signs in is
known from the answer only) and runs one of ``signin.py``'s flows, raced against a cancel and
the deadline. Its answer makes the account known (``accounts.py``), its token a memo entry
(``silent.py``'s memo; a bearer token, whatever the request), its cache the account's
partition (``msal_engine.py``), all committed (``persistence.py``) before the caller has the
token. A PoP sign-in's PoP-bound answer is the broker's next silent call (``pop_calls.py``).
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable
from concurrent.futures import Executor

import msal
import requests

from authbroker import broker1
from authbroker.daemon import signin
from authbroker.daemon.accounts import AccountTable
from authbroker.daemon.handler import CallContext
from authbroker.daemon.hot import HotTokens, SilentKey
from authbroker.daemon.msal_engine import TokenEngine
from authbroker.daemon.persistence import Persistence, Run
from authbroker.daemon.results import unreachable
from authbroker.daemon.routing import Target, split_claims

log = logging.getLogger(__name__)


class SignIns:
    """One broker's interactive sign-ins; ``running`` are those not finished yet."""

    def __init__(self, engine: TokenEngine, accounts: AccountTable, state: Persistence,
                 run: Run, executor: Executor, hot: HotTokens, *, ui_mode: str | None,
                 timeout: float, open_url: Callable[[str], bool] | None = None) -> None:
        self.engine = engine
        self.accounts = accounts
        self._state = state
        self._run = run
        self._executor = executor
        self._hot = hot
        self.ui_mode = ui_mode
        self.timeout = timeout
        self.open_url = open_url
        self.running: set[signin.SignIn] = set()

    async def sign_in(self, auth: broker1.AuthParameters, ctx: CallContext, *,
                      ui_mode: str | None = None) -> broker1.TokenResult:
        """Run a sign-in for ``auth`` (already admitted) and adopt the account it signs in;
        ``ui_mode`` (``signin.MODES``) forces a flow as ``AUTHBROKER_UI`` does."""
        forced = ui_mode or self.ui_mode
        mode = await self._run(signin.choose_mode, forced)  # webbrowser may run xdg-settings
        target = self.engine.target(auth)
        capabilities = split_claims(auth.decoded_claims).capabilities
        # a fresh cache of its own: the account it signs in is known from the answer only
        app = await self._run(self.engine.app, auth.client_id, target, capabilities)
        kwargs = {"open_url": self.open_url} if self.open_url else {}
        interaction = signin.Interaction(app, auth, ctx, self._executor, **kwargs)
        log.debug(
            "interactive %s: authority %s, scopes %s, prompt %r, hint %s, claims %r, query %s",
            ctx.correlation_id, auth.authority, list(auth.requested_scopes), auth.prompt,
            bool(auth.login_hint), auth.decoded_claims, sorted(auth.extra_query),
        )
        sign_in = signin.SignIn.of(ctx, interaction)
        self.running.add(sign_in)
        log.info("interactive %s for %s at %s (%s)", ctx.correlation_id, auth.client_id,
                 target.authority, mode)
        try:
            msal_result = await sign_in.run(
                interaction.sign_in(mode, forced=bool(forced)), self.timeout
            )
        except requests.exceptions.RequestException as exc:
            self.engine.forget_http_cache()
            raise unreachable(exc, target.authority, "core.interactive.network") from None
        finally:
            self.running.discard(sign_in)
        result: broker1.TokenResult = await self._run(
            self.engine.token_result, msal_result, auth.requested_scopes, app, target
        )
        await self._adopt(auth, result, app, target, capabilities)
        log.info("interactive %s: signed in %s", ctx.correlation_id,
                 result.account.username if result.account else "?")
        await self._state.flush(durable=True)  # on disk before the caller has the token
        return result

    async def _adopt(self, auth: broker1.AuthParameters, result: broker1.TokenResult,
                     app: msal.PublicClientApplication, target: Target,
                     capabilities: tuple[str, ...]) -> None:
        """The sign-in's account becomes known, its token a memo entry, its cache the
        account's partition."""
        self.accounts.signed_in(result.account)
        if result.account:
            hid = result.account.home_account_id
            # the sign-in's token is a bearer one, whatever the request (a PoP one is next)
            bearer = dataclasses.replace(auth, pop_params=None)
            self._hot.keep(SilentKey.of(bearer, target.authority, hid), result)
            # the sign-in's cache becomes the account's partition; the account's other
            # capability partitions get the new refresh token
            await self._run(self.engine.adopt, app, capabilities, hid, target.environment)
            self._state.touch(hid)

    def statuses(self) -> tuple[broker1.SignInStatus, ...]:
        """The running sign-ins, oldest first."""
        return tuple(s.status() for s in sorted(self.running, key=lambda s: s.started))

    def cancel_all(self) -> None:
        for sign_in in list(self.running):
            sign_in.cancel()

    def caller_left(self, sender: str) -> int:
        """``sender`` left the bus: cancel its running sign-ins at once; how many."""
        chosen = [s for s in self.running if sender and s.sender == sender]
        for sign_in in chosen:
            sign_in.cancel()
        if chosen:
            log.info("caller %s left: cancelling %d sign-in(s)", sender, len(chosen))
        return len(chosen)

    def cancel(self, ctx: CallContext) -> int:
        """Cancel the caller's running sign-ins: same correlation id, else same connection.

        Never anyone else's: pymsalruntime sends its cancel only after its own interactive call
        has returned, and that late cancel must not end another app's sign-in.
        """
        running = list(self.running)
        chosen = [s for s in running if s.correlation_id == ctx.correlation_id] or [
            s for s in running if ctx.sender and s.sender == ctx.sender
        ]
        for sign_in in chosen:
            sign_in.cancel()
        log.info("cancelInteractiveFlow %s: cancelled %d of %d sign-in(s)", ctx.correlation_id,
                 len(chosen), len(running))
        return len(chosen)
