"""The authority's HTML pages. Plain forms: everything works without JavaScript."""

from __future__ import annotations

from html import escape

_STYLE = (
    "body{font-family:sans-serif;max-width:26rem;margin:3rem auto;padding:0 1rem}"
    "label,input,button{display:block;width:100%;margin:.4rem 0;box-sizing:border-box}"
    "input,button{padding:.5rem}.error{color:#a4262c}.note{color:#555;font-size:.85rem}"
)


def _page(title: str, body: str, *, script: str = "") -> str:
    return (
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        f"<title>{escape(title)}</title><style>{_STYLE}</style></head>"
        f"<body><h1>{escape(title)}</h1>{body}{script}</body></html>\n"
    )


def _hidden(fields: dict[str, str]) -> str:
    return "".join(
        f'<input type="hidden" name="{escape(k)}" value="{escape(v)}">' for k, v in fields.items()
    )


def _error(message: str | None) -> str:
    return f'<p class="error" role="alert">{escape(message)}</p>' if message else ""


def sign_in(action: str, tx: str, *, username: str = "", error: str | None = None,
            app: str = "") -> str:
    focus_user, focus_password = ("", "autofocus") if username else ("autofocus", "")
    body = (
        f"<p>Sign in to continue to {escape(app) or 'the application'}.</p>{_error(error)}"
        f'<form method="post" action="{escape(action)}">{_hidden({"tx": tx})}'
        '<label for="username">Email or username</label>'
        f'<input id="username" name="username" type="text" inputmode="email" '
        f'value="{escape(username)}" autocomplete="username" {focus_user} required>'
        '<label for="password">Password</label>'
        '<input id="password" name="password" type="password" autocomplete="current-password" '
        f'{focus_password} required>'
        '<button type="submit" name="action" value="signin">Sign in</button></form>'
        '<p class="note">authbroker local authority &mdash; offline development sign-in.</p>'
    )
    return _page("Sign in", body)


def account_picker(action: str, tx: str, accounts: list[str]) -> str:
    buttons = "".join(
        f'<button type="submit" name="account" value="{escape(a)}">{escape(a)}</button>'
        for a in accounts
    )
    body = (
        f'<p>Pick an account</p><form method="post" action="{escape(action)}">'
        f"{_hidden({'tx': tx})}{buttons}"
        '<button type="submit" name="account" value="">Use another account</button></form>'
    )
    return _page("Pick an account", body)


def form_post(redirect_uri: str, fields: dict[str, str]) -> str:
    body = (
        f'<form method="post" action="{escape(redirect_uri)}">{_hidden(fields)}'
        "<noscript><p>Press Continue to finish signing in.</p></noscript>"
        '<button type="submit">Continue</button></form>'
    )
    return _page("Signing in", body, script="<script>document.forms[0].submit();</script>")


def error(title: str, message: str) -> str:
    return _page(title, f'<p class="error" role="alert">{escape(message)}</p>')


def device_login(action: str, *, user_code: str = "", username: str = "",
                 error: str | None = None) -> str:
    body = (
        f"<p>Enter the code shown on your device, then sign in.</p>{_error(error)}"
        f'<form method="post" action="{escape(action)}">'
        '<label for="user_code">Code</label>'
        f'<input id="user_code" name="user_code" value="{escape(user_code)}" '
        'autocomplete="off" required>'
        '<label for="username">Email or username</label>'
        '<input id="username" name="username" type="text" inputmode="email" '
        f'value="{escape(username)}" autocomplete="username" required>'
        '<label for="password">Password</label>'
        '<input id="password" name="password" type="password" required>'
        '<button type="submit">Sign in</button></form>'
    )
    return _page("Sign in on your device", body)


def device_done(username: str) -> str:
    return _page(
        "You're signed in",
        f"<p>{escape(username)} has signed in on your device. You can close this window.</p>",
    )
