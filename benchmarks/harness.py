"""Timing and reporting shared by the benchmarks: medians, ratios, a goal check per row."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass


def measure(fn: Callable[[], object], *, repeat: int, warmup: int = 3) -> list[float]:
    """Wall-clock seconds of ``repeat`` calls of ``fn`` after ``warmup`` untimed ones."""
    for _ in range(warmup):
        fn()
    samples = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - start)
    return samples


def median_ms(samples: list[float]) -> float:
    return statistics.median(samples) * 1000.0


@dataclass
class Row:
    name: str
    value: float
    unit: str
    baseline: float | None = None
    goal: str = ""
    ok: bool | None = None

    @property
    def ratio(self) -> float | None:
        return self.value / self.baseline if self.baseline else None


def report(title: str, rows: list[Row]) -> str:
    lines = [f"## {title}", "", "| measure | value | baseline | ratio | goal | met |",
             "| --- | --- | --- | --- | --- | --- |"]
    for r in rows:
        base = f"{r.baseline:.3f} {r.unit}" if r.baseline is not None else "–"
        ratio = f"{r.ratio:.2f}×" if r.ratio is not None else "–"
        met = {True: "yes", False: "NO", None: "–"}[r.ok]
        lines.append(f"| {r.name} | {r.value:.3f} {r.unit} | {base} | {ratio} | {r.goal} | {met} |")
    text = "\n".join(lines)
    print(text + "\n", flush=True)
    return text


def percentile_ms(samples: list[float], q: float) -> float:
    """The ``q``-th percentile (0-100, nearest rank) of ``samples`` (seconds), in ms."""
    ranked = sorted(samples)
    return ranked[min(len(ranked) - 1, max(0, round(q / 100 * len(ranked)) - 1))] * 1000.0


def grid(title: str, columns: list[str], rows: list[tuple[str, list[str]]]) -> str:
    """A plain table: one row per measure, one column per ``columns`` entry (already text)."""
    lines = [f"## {title}", "", "| measure | " + " | ".join(columns) + " |",
             "| --- |" + " --- |" * len(columns)]
    lines += [f"| {name} | " + " | ".join(cells) + " |" for name, cells in rows]
    text = "\n".join(lines)
    print(text + "\n", flush=True)
    return text
