"""The scripted user agent's log contract ("signing in as", counted by sign_ins) and its env."""

from __future__ import annotations

import shlex
import sys
from pathlib import Path

from authbroker import config
from authbroker.authority import DEMO_PASSWORD, DEMO_USERS
from authbroker.devkit import useragent

_LOG = """\
2026-12-03 10:00:00,000 useragent[41] signing in as user@contoso.example at 127.0.0.1:4443
2026-12-03 10:00:00,300 useragent[41] delivered the code to http://localhost:5000 (HTTP 200)
2026-12-03 10:00:09,000 useragent[57] signing in as second@contoso.example at 127.0.0.1:4443
2026-12-03 10:00:09,100 useragent[57] sign-in failed: the authority refused the sign-in
"""


def test_sign_ins_counts_the_lines_of_a_file_or_a_text(tmp_path: Path) -> None:
    log = tmp_path / "ua.log"
    assert useragent.sign_ins(log) == 0  # no file yet: nobody signed in
    log.write_text(_LOG)
    assert useragent.sign_ins(log) == 2
    assert useragent.sign_ins(str(log)) == 0  # a str is the text itself, not a path
    assert useragent.sign_ins(_LOG) == 2
    assert useragent.sign_ins("") == 0


def test_defaults_are_the_authoritys_demo_user() -> None:
    assert useragent.DEFAULT_USERNAME == DEMO_USERS[0] == "user@contoso.example"
    assert useragent.DEFAULT_PASSWORD == DEMO_PASSWORD


def test_browser_env_makes_browser_this_module(tmp_path: Path) -> None:
    env = useragent.browser_env(tmp_path / "ua.log")
    assert env == {
        "BROWSER": f"{shlex.quote(sys.executable)} -m authbroker.devkit.useragent %s",
        config.UA_LOG: str(tmp_path / "ua.log"),
    }
    who = useragent.browser_env(tmp_path / "ua.log", username="a@b.example", password="pw")
    assert (who[config.UA_USERNAME], who[config.UA_PASSWORD]) == ("a@b.example", "pw")
