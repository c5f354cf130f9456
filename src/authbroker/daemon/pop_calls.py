"""PoP calls: the account's key for a request, each caller's SHR, signed HTTP requests.

What the broker does for Proof-of-Possession beyond a bearer call (the key and the SHR format
are ``popkeys.py``'s): the account's :class:`~authbroker.daemon.popkeys.PopKey` as last read
(so a memo hit signs on the event loop), read or made through the engine when a request needs
it (sealed before anything is signed with it); each caller's own Signed HTTP Request over the
PoP-bound access token the silent path (``silent.py``) served, memo hit or shared refresh; the
silent request that follows a PoP sign-in (whose own access token is a bearer one); and
``generateSignedHttpRequest``, an SHR without ``at`` signed with the account's key.
"""

from __future__ import annotations

import dataclasses

from authbroker import broker1
from authbroker.daemon import audit
from authbroker.daemon.accounts import AccountTable
from authbroker.daemon.msal_engine import TokenEngine
from authbroker.daemon.persistence import Persistence, Run
from authbroker.daemon.popkeys import PopKey, PopKeys, check_pop_params, pop_token
from authbroker.daemon.silent import Fetched, Served
from authbroker.errors import BrokerStatusError


class PopCalls:
    """The PoP side of one broker's calls; ``keys`` is shared with its silent path."""

    def __init__(self, engine: TokenEngine, accounts: AccountTable, state: Persistence,
                 run: Run) -> None:
        self.engine = engine
        self.accounts = accounts
        self._state = state
        self._run = run
        self.keys = PopKeys()  # accounts' PoP keys as last read, for memo hits

    def forget(self, home_account_id: str) -> None:
        self.keys.forget(home_account_id)

    async def known_key(self, pop: broker1.PopParams, home_account_id: str) -> PopKey | None:
        """The account's PoP key if known without the engine (a request naming a ``kid``
        has it read now, to refuse a foreign key before any token is fetched)."""
        pop_key = self.keys.get(home_account_id)
        if pop_key is None and pop.kid:
            pop_key = await self.account_key(home_account_id)
        if pop_key is not None:
            pop_key.check_kid(pop)
        return pop_key

    async def account_key(self, home_account_id: str) -> PopKey:
        """A signed-in account's PoP key (made on first use); status 2 for another account."""
        if home_account_id not in self.accounts:
            raise BrokerStatusError(
                broker1.Status.INTERACTION_REQUIRED,
                f"no signed-in account {home_account_id}; sign in",
                tag="pop.account",
            )
        pop_key: PopKey = await self._run(self.engine.pop_key, home_account_id)
        self.keys.keep(home_account_id, pop_key)
        await self._state.flush()  # a new key is sealed before anything is signed with it
        return pop_key

    @staticmethod
    def for_caller(fetched: Fetched, pop: broker1.PopParams | None) -> Served:
        """The caller's answer: a bearer token as served, or a PoP-bound one with the
        caller's own fresh SHR over it (each caller signs its own)."""
        result, how, bound_to = fetched
        if pop is None or bound_to is None:
            return result, how
        bound_to.check_kid(pop)
        return pop_token(result, bound_to, pop), how

    @staticmethod
    def after_sign_in(auth: broker1.AuthParameters,
                      signed_in: broker1.TokenResult) -> broker1.AuthParameters:
        """The silent request that answers a PoP sign-in: the sign-in's access token is a
        bearer one (kept with the bearer tokens; the account, hence its key, is known only
        from the answer), so the account's refresh token gets it a PoP-bound one."""
        if signed_in.account is None:
            raise BrokerStatusError(broker1.Status.UNEXPECTED,
                                    "the sign-in named no account to bind a PoP token to",
                                    tag="pop.sign_in")
        return dataclasses.replace(
            auth, account=signed_in.account, is_sign_in=False, prompt="",
            authorization_type=broker1.AuthorizationType.CACHED_REFRESH_TOKEN)

    def request_auth(self, request: broker1.SignedHttpRequestRequest) -> broker1.AuthParameters:
        """What a ``generateSignedHttpRequest`` call's audit line names: its client, its
        ``popParams`` and the account ``popParams.homeAccountId`` names."""
        pop, hid = request.pop_params, request.pop_params.home_account_id
        account = self.accounts.account(hid) if hid in self.accounts else (
            broker1.Account(hid, "", "", "") if hid else None)
        return broker1.AuthParameters(client_id=request.client_id, requested_scopes=(),
                                      pop_params=pop, account=account)

    async def sign_request(self, pop: broker1.PopParams) -> tuple[str, str]:
        """``generateSignedHttpRequest``: an SHR without ``at``, signed with the key of the
        account ``popParams.homeAccountId`` names (made on first use)."""
        check_pop_params(pop)
        if not pop.home_account_id:
            raise BrokerStatusError(
                broker1.Status.API_CONTRACT_VIOLATION,
                "generateSignedHttpRequest needs popParams.homeAccountId (the account whose "
                "key signs)", tag="pop.shr.account")
        pop_key = self.keys.get(pop.home_account_id)  # as last read: no executor, no store
        if pop_key is None or pop.home_account_id not in self.accounts:
            pop_key = await self.account_key(pop.home_account_id)
        pop_key.check_kid(pop)
        return pop_key.sign(pop), audit.SIGNED
