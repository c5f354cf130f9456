"""The scale benchmark's figures (name, unit) and issue 11's goals at the largest size."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from benchmarks.harness import Row


@dataclass(frozen=True)
class Spec:
    key: str
    label: str
    unit: str
    digits: int = 2


def with_p95(key: str, label: str, digits: int = 2) -> tuple[Spec, Spec]:
    """A latency figure's median and its 95th percentile (``<key>_p95``), in ms."""
    return Spec(key, f"{label} (p50)", "ms", digits), Spec(f"{key}_p95", "↳ p95", "ms", digits)


SPECS = [
    Spec("population", "population (sign-ins + new-scope calls)", "s", 1),
    Spec("sign_ins", "↳ the sign-ins", "s", 1),
    Spec("scopes", "↳ the new-scope calls", "s", 1),
    *with_p95("refresh", "forced refresh, random account"),
    Spec("msal", "the same refresh in-process by msal, 1 account (p50)", "ms"),
    *with_p95("new_scope", "token for a new scope"),
    *with_p95("cached", "cached silent, 1 client, random keys", 3),
    Spec("memo", "cached silent, 1 client, the same key (the memo)", "ms", 3),
    Spec("cached_many", "cached silent, client processes, random keys", "calls/s", 0),
    Spec("accounts", "getAccounts (p50)", "ms"),
    Spec("removal", "one account's removal (p50)", "ms"),
    Spec("bytes", "bytes written to disk per refresh", "KB", 1),
    Spec("wchar", "↳ bytes passed to write() per refresh", "KB", 1),
    Spec("store", "store on disk", "MB", 2),
    Spec("stall", "worst cached call while refreshes stream", "ms", 1),
    Spec("stall_p99", "↳ p99", "ms", 1),
    Spec("stall_quiet", "↳ worst with no refreshes running", "ms", 1),
    Spec("stall_refreshes", "↳ refreshes/s in those streams", "1/s", 0),
    Spec("busy", "100 simultaneous cached calls: busy refusals (worst burst)", "calls", 0),
    Spec("busy_total", "↳ refusals in all bursts", "calls", 0),
    Spec("startup", "daemon start → first answered silent call (p50)", "ms", 0),
    Spec("rss", "daemon RSS after the refresh runs", "MB", 1),
    Spec("rss_peak", "↳ peak RSS", "MB", 1),
]
LABELS = {s.key: s.label for s in SPECS}
UNITS = {s.key: s.unit for s in SPECS}


def _row(key: str, value: float, baseline: float | None, goal: str,
         met: Callable[[float, float | None], bool], label: str = "") -> Row:
    row = Row(label or LABELS[key], value, UNITS[key], baseline=baseline, goal=goal)
    row.ok = met(value, row.ratio) if (baseline is not None or "×" not in goal) else None
    return row


def goal_rows(small: dict[str, float], large: dict[str, float], compared: bool) -> list[Row]:
    """Issue 11's goals at the largest size; ratios are to the smallest size of the run
    (no ratio, no verdict, when only one size ran)."""
    base = small if compared else {}

    def at_most(limit: float) -> Callable[[float, float | None], bool]:
        return lambda _v, ratio: ratio is not None and ratio <= limit

    rows = [_row(key, large[key], base.get(key), "≤ 1.2× 1 account", at_most(1.2))
            for key in ("refresh", "new_scope", "cached", "removal")]
    rows.append(_row("cached_many", large["cached_many"], base.get("cached_many"),
                     "≥ 0.83× 1 account (≤ 1.2× the time)",
                     lambda _v, ratio: ratio is not None and ratio >= 1 / 1.2))
    rows.append(_row("refresh", large["refresh"], large["msal"], "≤ 1.3× msal in-process",
                     at_most(1.3), label="refresh through the daemon ÷ msal in-process"))
    rows.append(_row("bytes", large["bytes"], base.get("bytes"), "≤ 2× 1 account", at_most(2)))
    rows.append(_row("stall", large["stall"], None, "≤ 20 ms", lambda v, _r: v <= 20))
    rows.append(_row("busy", large["busy"], None, "0 refused", lambda v, _r: v == 0))
    rows.append(_row("startup", large["startup"], None, "≤ 1000 ms", lambda v, _r: v <= 1000))
    rows.append(_row("rss", large["rss"], None, "≤ 100 MB", lambda v, _r: v <= 100))
    population_goal = "≤ 300 s at 1,000 × 10" if large.get("size", 0) >= 1000 else ""
    rows.append(_row("population", large["population"], None, population_goal,
                     lambda v, _r: v <= 300))
    if not population_goal:
        rows[-1].ok = None
    return rows
