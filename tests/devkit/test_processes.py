"""devkit's child processes: stop (SIGTERM, then SIGKILL), the log read back, the access log."""

from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path

import pytest

from authbroker import config
from authbroker.devkit.processes import Child, StartError, environ, served_calls

_IGNORES_SIGTERM = (
    "import signal, sys, time\n"
    "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
    "print('ready', file=sys.stderr, flush=True)\n"
    "time.sleep(60)\n"
)


def _python(code: str, tmp_path: Path, **kwargs: object) -> Child:
    return Child([sys.executable, "-c", code], log=tmp_path / "child.log", **kwargs)


def test_stop_sends_sigterm_and_returns_the_exit_status(tmp_path: Path) -> None:
    child = _python("import time; time.sleep(60)", tmp_path).start()
    assert child.running()
    assert child.stop() == -signal.SIGTERM
    assert not child.running() and child.returncode == -signal.SIGTERM


def test_stop_kills_a_child_that_ignores_sigterm_after_the_grace(tmp_path: Path) -> None:
    child = _python(_IGNORES_SIGTERM, tmp_path, grace=0.5).start()
    child.wait_until(lambda: "ready" in child.log_text(), 10)
    started = time.monotonic()
    assert child.stop() == -signal.SIGKILL
    assert 0.4 < time.monotonic() - started < 5


def test_stop_without_start_and_twice_is_harmless(tmp_path: Path) -> None:
    child = _python("pass", tmp_path)
    assert child.stop() is None
    with child:
        pass
    assert child.stop() == child.returncode


def test_log_tail_and_last_problem(tmp_path: Path) -> None:
    at = "2026-12-03 10:00:00,000 x"
    code = (f"import sys\nfor i in range(500): print(f'{at} INFO line {{i}}', file=sys.stderr)\n"
            + "".join(f"print('{at} {line}', file=sys.stderr)\n" for line in (
                "WARNING Secret Service unavailable", "ERROR it broke",
                "WARNING Secret Service unavailable")))
    child = _python(code, tmp_path).start()
    child.process.wait(10)
    assert child.log_tail(60).endswith("Secret Service unavailable\n")
    assert len(child.log_tail(60)) == 60
    assert child.last_problem() == "x WARNING Secret Service unavailable"
    assert child.last_problem("Secret Service") == "x ERROR it broke"
    assert _python("pass", tmp_path / "other").last_problem() is None  # no log yet


def test_a_child_that_exits_before_it_is_ready_raises_with_its_log(tmp_path: Path) -> None:
    child = _python("import sys; sys.exit(3)", tmp_path, what="the thing")
    child.start()
    with pytest.raises(StartError) as caught:
        child.wait_until(lambda: False, 10)
    assert caught.value.message == "the thing did not start (exit 3)"
    assert caught.value.hint == f"see {tmp_path / 'child.log'}"


def test_a_child_that_is_never_ready_is_stopped(tmp_path: Path) -> None:
    child = _python("import time; time.sleep(60)", tmp_path).start()
    with pytest.raises(StartError, match="not ready within 0 s"):
        child.wait_until(lambda: False, 0.2)
    assert not child.running()


def test_stdout_to_a_file_and_env_read_at_start(tmp_path: Path) -> None:
    code = "import os; print(os.environ['MARKER'])"
    child = _python(code, tmp_path, stdout=tmp_path / "out", env={"MARKER": "one"})
    with child:
        child.process.wait(10)
    child.env = {"MARKER": "two"}
    with child:
        child.process.wait(10)
    assert (tmp_path / "out").read_text() == "one\ntwo\n"


def test_environ_sets_and_removes_then_restores(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AB_KEPT", "before")
    monkeypatch.delenv("AB_NEW", raising=False)
    with environ({"AB_KEPT": None, "AB_NEW": "set"}):
        assert "AB_KEPT" not in os.environ and os.environ["AB_NEW"] == "set"
    assert os.environ["AB_KEPT"] == "before" and "AB_NEW" not in os.environ


_AT = "2026-12-03 10:00:00,001"
_ACCESS = f"{_AT} {config.ACCESS_LOGGER}"
_SAMPLE_LOG = "\n".join([
    f"{_AT} authbroker.daemon INFO serving com.microsoft.identity.broker1",
    f"{_ACCESS} INFO acquireTokenInteractively correlation=5b1e ok in 812.4 ms",
    f"{_AT} authbroker.daemon.service INFO getAccounts correlation=77aa ok in 1.0 ms",
    f"{_ACCESS} DEBUG acquireTokenSilently correlation=9c0d ok in 1.3 ms",
    f"{_ACCESS} INFO acquireTokenSilently correlation=9c0e status 6 in 2.0 ms",
    f"{_AT} authbroker.daemon.signin INFO acquireTokenSilently correlation=dead (no access line)",
    f"{_ACCESS} INFO getAccounts correlation=- refused foreign uid 1001 in 0.4 ms",
    "",
])


def test_served_calls_reads_the_access_logger_only() -> None:
    assert config.ACCESS_LOGGER == "authbroker.daemon.access"
    assert served_calls(_SAMPLE_LOG) == [
        "acquireTokenInteractively", "acquireTokenSilently", "acquireTokenSilently", "getAccounts",
    ]
    assert served_calls("") == []
