"""Where the broker keeps each account's PRT: sealed in the account's token snapshot, and in memory.

A :class:`~authbroker.daemon.prt.PrtState` is saved as its record under ``partitions.PRT`` in the
account's snapshot (so the record store seals it with the account's tokens and
``removeAccount`` drops it with them), committed durably before it is used; the states read or
kept since are remembered here, and so is why a dropped one went (``"expired"``,
``"refused"``) for the status. Reading and writing a snapshot blocks: the broker's executor.
"""

from __future__ import annotations

import logging

from authbroker.daemon.accounts import AccountTable
from authbroker.daemon.msal_engine import TokenEngine
from authbroker.daemon.persistence import Persistence, Run
from authbroker.daemon.prt import PrtState

log = logging.getLogger(__name__)


class KeptPrts:
    """Accounts' PRTs, as saved in their snapshots and as last read or kept."""

    def __init__(self, engine: TokenEngine, accounts: AccountTable, state: Persistence,
                 run: Run) -> None:
        self.engine = engine
        self.accounts = accounts
        self._state = state
        self._run = run
        self.states: dict[str, PrtState] = {}  # as last read or kept
        self.outcomes: dict[str, str] = {}  # a dropped PRT: "expired" or "refused"

    def read(self, home_account_id: str) -> PrtState | None:
        """Blocks: the PRT record of the account's snapshot (None: none, or unreadable)."""
        with self.engine.account_lock(home_account_id):
            record = self.engine.tokens(home_account_id).prt_record
        if record is None:
            return None
        try:
            return PrtState.from_record(record)
        except ValueError as exc:  # never the record: the reason only
            log.error("account %s: %s; the device needs a new PRT", home_account_id, exc)
            return None

    def _write(self, home_account_id: str, record: str | None) -> None:
        """Blocks: the PRT record into (None: out of) the account's snapshot."""
        with self.engine.account_lock(home_account_id):
            self.engine.tokens(home_account_id).keep_prt(record)
            self.engine.resident.touch(home_account_id)

    def peek(self, home_account_id: str) -> PrtState | None:
        """The account's PRT as known, else read now (blocks briefly: a status asks)."""
        known = self.states.get(home_account_id)
        if known is None and home_account_id not in self.outcomes:
            known = self.read(home_account_id)
        return known

    async def load(self, home_account_id: str) -> tuple[PrtState | None, bool]:
        """The account's PRT (read in the executor if not known) and whether it was read now."""
        known = self.states.get(home_account_id)
        if known is not None or home_account_id in self.outcomes:
            return known, False
        state = await self._run(self.read, home_account_id)
        if state is not None:
            self.states[home_account_id] = state
        return state, state is not None

    async def keep(self, state: PrtState) -> None:
        """Save a (new) PRT durably; only then may it be used."""
        hid = state.home_account_id
        await self._run(self._write, hid, state.to_record())
        self.states[hid] = state
        self.outcomes.pop(hid, None)
        await self._state.flush(durable=True)

    async def drop(self, home_account_id: str, outcome: str | None) -> None:
        """Drop the account's PRT, saying why (None: forgotten, as if there never was one)."""
        self.states.pop(home_account_id, None)
        if outcome is None:
            self.outcomes.pop(home_account_id, None)
        else:
            self.outcomes[home_account_id] = outcome
        if home_account_id in self.accounts:
            await self._run(self._write, home_account_id, None)
            await self._state.flush(durable=True)

    def forget(self, home_account_id: str) -> None:
        """The account is gone (its snapshot with it): forget its PRT here too."""
        self.states.pop(home_account_id, None)
        self.outcomes.pop(home_account_id, None)
