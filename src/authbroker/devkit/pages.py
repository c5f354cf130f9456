"""Web pages as a browser without JavaScript sees them: their forms and their visible text."""

from __future__ import annotations

from dataclasses import dataclass, field
from html.parser import HTMLParser


@dataclass
class Form:
    """A form: where it goes, how, its named fields and its submit buttons."""

    action: str
    method: str
    fields: dict[str, str] = field(default_factory=dict)  # named inputs other than buttons
    buttons: list[tuple[str, str, str]] = field(default_factory=list)  # (name, value, label)


class _PageParser(HTMLParser):
    """Collects the forms of a page and its visible text."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.forms: list[Form] = []
        self.text: list[str] = []
        self._skip = 0  # inside <script>/<style>
        self._button: list[str] | None = None  # (name, value) of an open <button>
        self._button_label: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        if tag in ("script", "style"):
            self._skip += 1
        elif tag == "form":
            self.forms.append(Form(a.get("action", ""), (a.get("method") or "get").upper()))
        elif not self.forms:
            return
        elif tag == "input":
            kind = a.get("type", "text").lower()
            name = a.get("name", "")
            if kind in ("submit", "image"):
                self.forms[-1].buttons.append((name, a.get("value", ""), a.get("value", "")))
            elif kind in ("checkbox", "radio"):
                if name and "checked" in a:
                    self.forms[-1].fields[name] = a.get("value", "on")
            elif name and kind not in ("button", "reset", "file"):
                self.forms[-1].fields[name] = a.get("value", "")
        elif tag == "button" and a.get("type", "submit").lower() == "submit":
            self._button = [a.get("name", ""), a.get("value", "")]
            self._button_label = []

    def handle_endtag(self, tag: str) -> None:
        if tag in ("script", "style"):
            self._skip = max(0, self._skip - 1)
        elif tag == "button" and self._button is not None and self.forms:
            label = " ".join(" ".join(self._button_label).split())
            self.forms[-1].buttons.append((self._button[0], self._button[1], label))
            self._button = None

    def handle_data(self, data: str) -> None:
        if self._skip:
            return
        if self._button is not None:
            self._button_label.append(data)
        if data.strip():
            self.text.append(data.strip())


def parse_page(html: str) -> tuple[list[Form], str]:
    """The forms on a page and its visible text (one line, whitespace collapsed)."""
    parser = _PageParser()
    parser.feed(html)
    parser.close()
    return parser.forms, " ".join(" ".join(parser.text).split())
