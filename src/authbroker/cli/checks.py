"""The checks of ``authbroker doctor``: each part sign-in needs, as "ok" or what to do.

Each check returns a :class:`Check` (name, ok, detail, fix, and whether its failure blocks
sign-in); :func:`run_all` runs them in order, bounded in time (bus calls, the Secret Service and
each HTTPS request time out within seconds) and never prompting. Nothing here prints, and no
secret leaves this module: the store is read only up to its header, and a store key is only
used to compare its public fingerprint (``store.key_id``) with that header.
"""

from __future__ import annotations

import os
import sqlite3
import stat
from collections.abc import Callable
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from authbroker import broker1, config
from authbroker.errors import AuthBrokerError

INSTALL_FIX = "run `authbroker install-service` (or start `authbroker daemon`)"
TIMEOUT_S = 5.0
SQLITE_MAGIC = b"SQLite format 3\0"


@dataclass(frozen=True)
class Check:
    check: str
    ok: bool
    detail: str
    fix: str = ""
    blocks: bool = False  # a failure here stops sign-in (doctor's exit status)

    def as_json(self) -> dict[str, Any]:
        return {"check": self.check, "ok": self.ok, "detail": self.detail, "fix": self.fix}


def failed(check: Check) -> bool:
    return not check.ok and check.blocks


class Doctor:
    """The checks, in order; later ones use what earlier ones found (owner, key)."""

    def __init__(self, store: Path | None = None) -> None:
        from authbroker.daemon.store import default_store_path

        self.store_path = Path(store or default_store_path())
        self.bus_reachable = False
        self.broker_reachable = False
        self.store_key: bytes | None = None  # from the Secret Service; never shown

    def run(self) -> list[Check]:
        steps: list[Callable[[], list[Check]]] = [
            self.session_bus, self.broker_name, self.broker_version, self.secret_service,
            self.store, self.routing, self.tls, self.sign_in_ui, self.plugin_backends,
        ]
        return [check for step in steps for check in step()]

    # -- the bus and the broker ----------------------------------------------------------------

    def session_bus(self) -> list[Check]:
        from authbroker.plugin.backends.dbus import NO_BUS_FIX, session_bus_error

        error = session_bus_error()
        if error:
            return [Check("session-bus", False, f"cannot connect: {error}", NO_BUS_FIX, True)]
        self.bus_reachable = True
        address = os.environ.get("DBUS_SESSION_BUS_ADDRESS", "")
        return [Check("session-bus", True, f"reachable at {address}")]

    def broker_name(self) -> list[Check]:
        from jeepney.bus_messages import message_bus
        from jeepney.io.blocking import Proxy, open_dbus_connection
        from jeepney.wrappers import DBusErrorResponse

        from authbroker.plugin.backends.dbus import NO_BUS_FIX

        name = broker1.BUS_NAME
        if not self.bus_reachable:
            return [Check("broker-name", False, "not asked: no session bus", NO_BUS_FIX, True)]
        try:
            with closing(open_dbus_connection("SESSION", auth_timeout=2.0)) as conn:
                bus = Proxy(message_bus, conn, timeout=TIMEOUT_S)
                if bus.NameHasOwner(name)[0]:
                    self.broker_reachable = True
                    return [Check("broker-name", True, owner_detail(bus, name))]
                activatable = name in bus.ListActivatableNames()[0]
        except (OSError, KeyError, ValueError, TimeoutError, DBusErrorResponse) as exc:
            detail = f"cannot ask the session bus ({type(exc).__name__}: {exc})"
            return [Check("broker-name", False, detail, INSTALL_FIX, True)]
        if activatable:
            self.broker_reachable = True
            found = service_file(name)
            where = f" by {found}" if found else " (the bus has a .service file for it)"
            return [Check("broker-name", True, f"nobody owns {name}; it is activatable{where}")]
        detail = f"nothing owns {name} and the bus cannot activate it"
        return [Check("broker-name", False, detail, INSTALL_FIX, True)]

    def broker_version(self) -> list[Check]:
        """getLinuxBrokerVersion through our client (this starts an activatable broker)."""
        if not self.broker_reachable:
            detail = "not asked: no broker on the session bus"
            return [Check("broker-version", False, detail, INSTALL_FIX, True)]
        from authbroker.client import BrokerClient

        try:
            with BrokerClient(timeout=2 * TIMEOUT_S) as client:
                version = client.get_linux_broker_version()
        except AuthBrokerError as exc:
            fix = "see the broker's log (`journalctl --user -u authbroker-broker` for the unit)"
            return [Check("broker-version", False, f"the broker did not answer: {exc}", fix, True)]
        return [Check("broker-version", True, f"getLinuxBrokerVersion: {version}")]

    # -- the daemon's key and store ------------------------------------------------------------

    def secret_service(self) -> list[Check]:
        from authbroker.daemon.keys import KeyUnavailableError, SecretServiceKeyProvider

        try:
            self.store_key = SecretServiceKeyProvider(timeout=3.0).get(create=False)
        except KeyUnavailableError as exc:
            fix = (
                "unlock the login keyring (sign in to the desktop) or install a Secret Service "
                "(gnome-keyring, KeePassXC); meanwhile the store key stays in a 0600 key file"
            )
            return [Check("secret-service", False, str(exc), fix)]
        held = "holds the store key" if self.store_key else "holds no store key yet"
        return [Check("secret-service", True, f"present and unlocked; {held}")]

    def store(self) -> list[Check]:
        path = self.store_path
        try:
            with open(path, "rb") as fh:
                head = fh.read(64)  # a header: nothing is decrypted
            mode = os.stat(path).st_mode
        except FileNotFoundError:
            detail = f"no store yet at {path} (the daemon creates it at the first sign-in)"
            return [Check("store", True, f"{detail}; key: {self._key_source(set())}")]
        except OSError as exc:
            fix = f"make {path} readable and writable by this user only (chmod 600)"
            return [Check("store", False, f"cannot read {path}: {exc.strerror}", fix, True)]
        try:
            what, kids = store_metadata(path, head)
        except (ValueError, sqlite3.Error) as exc:
            fix = "the daemon moves an unreadable store aside (.corrupt-*) and starts empty"
            return [Check("store", False, f"{path}: {exc}", fix)]
        checks = [self._store_key_check(path, what, kids)]
        if mode & (stat.S_IRWXG | stat.S_IRWXO):
            checks.append(Check("store-permissions", False, f"{path} is readable by others",
                                f"chmod 600 {path}"))
        return checks

    def _available_keys(self) -> dict[bytes, str]:
        """Key id -> where that key is, for the keys this user has (the keys stay here)."""
        from authbroker.daemon.keys import FILE, SECRET_SERVICE, DefaultKeyProvider
        from authbroker.daemon.store import Store, key_id

        found: dict[bytes, str] = {}
        provider = Store(self.store_path).keys  # the daemon's key file naming, nothing read yet
        if isinstance(provider, DefaultKeyProvider):
            file_key = provider.file.read()
            if file_key is not None:
                found[key_id(file_key)] = f"{FILE} ({provider.file.path})"
        if self.store_key is not None:
            found[key_id(self.store_key)] = SECRET_SERVICE
        return found

    def _key_source(self, kids: set[bytes]) -> str:
        available = self._available_keys()
        if not kids:
            return ", ".join(dict.fromkeys(available.values())) or "none yet"
        return ", ".join(sorted({available[kid] for kid in kids if kid in available}))

    def _store_key_check(self, path: Path, what: str, kids: set[bytes]) -> Check:
        missing = kids - set(self._available_keys())
        if missing:
            fix = (
                "unlock the keyring that held its key (or restore its .key file); otherwise "
                "what that key sealed is set aside and those accounts must sign in again"
            )
            detail = f"{path} ({what}) is encrypted with a key that is not available here"
            return Check("store", False, detail, fix)
        return Check("store", True, f"{path} ({what}); key: {self._key_source(kids)}")

    # -- where requests go ---------------------------------------------------------------------

    def routing(self) -> list[Check]:
        from authbroker.daemon.routing import resolve_authority

        try:
            settings = config.Settings.load()
            authority = settings.authority
            target = resolve_authority("", authority).authority if authority else None
        except AuthBrokerError as exc:
            fix = exc.hint or f"fix {config.AUTHORITY} or `authority` in {config.config_file()}"
            return [Check("routing", False, exc.message, fix, True)]
        if settings.route_public_cloud and not authority:
            detail = f"{config.ROUTE_PUBLIC_CLOUD} is on, and there is no private authority"
            fix = f"set {config.AUTHORITY}, or turn {config.ROUTE_PUBLIC_CLOUD} off"
            return [Check("routing", False, detail, fix, True)]
        if target is None:
            detail = f"no private authority ({config.AUTHORITY} unset): requests go where named"
        else:
            detail = f"{config.AUTHORITY}={authority}: requests naming its host go to {target}"
        sent = f"sent to {authority}" if settings.route_public_cloud else "not redirected"
        return [Check("routing", True, f"{detail}; Microsoft's public-cloud hosts: {sent}")]

    def tls(self) -> list[Check]:
        authority = config.setting("authority")
        if not authority:
            return []
        return [tls_check(authority)]

    # -- sign-in UI and the plugin -------------------------------------------------------------

    def sign_in_ui(self) -> list[Check]:
        from authbroker.daemon.signin import BROWSER, can_open_browser, choose_mode

        browser = can_open_browser()
        checks = [
            Check("browser", True, "a browser can be opened here")
            if browser
            else Check("browser", False, "no browser can be opened here ($BROWSER unset, no "
                       "display)", "set $BROWSER to a browser command (device code works too)")
        ]
        try:
            mode = choose_mode(config.setting("ui"))
        except AuthBrokerError as exc:
            checks.append(Check("sign-in-ui", False, str(exc), f"fix {config.UI}", True))
            return checks
        how = "browser" if mode == BROWSER else "device code (URL and code in a notification)"
        checks.append(Check("sign-in-ui", True, f"the daemon would sign in by {how}"))
        return checks

    def plugin_backends(self) -> list[Check]:
        from authbroker.plugin.backends.select import diagnosis

        try:
            found = diagnosis()
        except AuthBrokerError as exc:
            return [Check("plugin", False, str(exc), f"fix {config.BACKEND}", True)]
        checks = [
            Check(f"plugin-{name}", unusable is None,
                  "usable" if unusable is None else unusable[0], unusable[1] if unusable else "")
            for name, unusable in found
        ]
        if not any(check.ok for check in checks):
            fix = "make one of the backends above usable"
            checks.append(Check("plugin", False, "no plugin backend is usable", fix, True))
        return checks


def owner_detail(bus: Any, name: str) -> str:
    """Who owns ``name``: its unique name, pid and executable (as far as the bus tells)."""
    owner = bus.GetNameOwner(name)[0]
    try:
        pid = int(bus.GetConnectionUnixProcessID(name)[0])
    except Exception:  # a bus that does not tell (no credentials on its transport)
        return f"owned by {owner}"
    try:
        exe = os.readlink(f"/proc/{pid}/exe")
    except OSError:
        exe = "executable unknown"
    return f"owned by {owner}: pid {pid}, {exe}"


def service_file(name: str) -> Path | None:
    """The activation file for ``name`` in the usual directories, if one is there."""
    from authbroker.daemon.install import SYSTEM_DBUS_SERVICES, target_dirs

    dirs = [target_dirs(None)[0], *SYSTEM_DBUS_SERVICES]
    dirs += [Path(d) / "dbus-1" / "services"
             for d in os.environ.get("XDG_DATA_DIRS", "").split(":") if d]
    for folder in dirs:
        candidate = folder / f"{name}.service"
        if candidate.is_file():
            return candidate
    return None


def store_metadata(path: Path, head: bytes) -> tuple[str, set[bytes]]:
    """What kind of store ``path`` is and the key ids of what it holds (no key, no decryption).

    The record store (SQLite) is opened read-only for its ``kid`` columns; the single-file
    store's header is parsed by its own module. ``ValueError`` when it is neither.
    """
    from authbroker.daemon.store import FORMAT_VERSION, StoreFormatError, read_header

    if head.startswith(SQLITE_MAGIC):
        uri = f"{path.resolve().as_uri()}?mode=ro"
        with closing(sqlite3.connect(uri, uri=True, timeout=TIMEOUT_S)) as db:
            kids = {bytes(row[0]) for row in db.execute("SELECT kid FROM accounts")}
            (rows,) = db.execute("SELECT COUNT(*) FROM accounts").fetchone()
            (aside,) = db.execute("SELECT COUNT(*) FROM quarantine").fetchone()
        held = f"{rows} account(s)" + (f", {aside} set aside as unreadable" if aside else "")
        return f"record store, {held}", kids
    try:
        version, kid = read_header(head)
    except StoreFormatError as exc:
        raise ValueError(str(exc)) from None
    if version > FORMAT_VERSION:
        raise ValueError(f"single-file store of format {version}, newer than this authbroker")
    return f"single-file store, format {version}", {kid}


def tls_check(authority: str) -> Check:
    """An HTTPS GET of ``authority``'s openid-configuration with the REQUESTS_CA_BUNDLE trust."""
    import requests

    parts = urlsplit(authority.strip())
    tenant = parts.path.strip("/").split("/")[0] or "organizations"
    url = f"{parts.scheme}://{parts.netloc}/{tenant}/v2.0/.well-known/openid-configuration"
    name = f"tls {parts.netloc}"
    bundle = os.environ.get("REQUESTS_CA_BUNDLE")
    trust = f"REQUESTS_CA_BUNDLE={bundle}" if bundle else "the default CA bundle"
    try:
        answer = requests.get(url, timeout=TIMEOUT_S)
    except requests.exceptions.SSLError as exc:
        fix = (
            "set REQUESTS_CA_BUNDLE to the authority's CA certificate, for the daemon too "
            "(`authbroker authority` keeps it as ca.pem in its data directory)"
        )
        reason = type(exc.__context__ or exc).__name__
        return Check(name, False, f"certificate not trusted with {trust} ({reason})", fix, True)
    except requests.RequestException as exc:
        fix = f"start the authority, or fix {config.AUTHORITY}"
        detail = f"cannot reach {url}: {type(exc).__name__}"
        return Check(name, False, detail, fix, True)
    if answer.status_code != 200:
        fix = f"check {config.AUTHORITY}: is it an Entra-compatible authority?"
        return Check(name, False, f"{url} answered {answer.status_code}", fix, True)
    return Check(name, True, f"trusted with {trust}; openid-configuration answered")


def run_all(store: Path | None = None) -> list[Check]:
    return Doctor(store).run()
