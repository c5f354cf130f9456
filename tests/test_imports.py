"""The layering contract: parts import downwards only (plain ``ast`` over ``src/``).

Layers, bottom first: errors · config · entra · files · shr → broker1 → client · daemon · plugin ·
authority (with ``azure.identity.broker``) → devkit · demo → cli. A module may import its own
part and any lower layer; the only sideways edge is the plugin's use of the client. The local
authority imports nothing of daemon, plugin, client or broker1, and nothing below devkit imports
devkit or demo. Imports inside functions count too.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"

LAYER = {
    "errors": 0, "config": 0, "entra": 0, "files": 0, "shr": 0, "devicecrypto": 0,
    "broker1": 1,
    "client": 2, "daemon": 2, "plugin": 2, "authority": 2, "azure.identity.broker": 2,
    "devkit": 3, "demo": 3,
    "cli": 4,
    "authbroker": 0,  # the package itself: a version and a map of the parts, imports nothing
}
SIDEWAYS = {("plugin", "client"), ("azure.identity.broker", "plugin"), ("demo", "devkit")}


def part_of_module(module: str) -> str | None:
    """The part a dotted module name belongs to (None: not ours)."""
    if module.startswith("azure.identity.broker"):
        return "azure.identity.broker"
    if module == "authbroker":
        return "authbroker"
    if module == "authbroker.__main__":
        return "cli"
    if module.startswith("authbroker."):
        return module.split(".")[1]
    return None


def modules() -> list[tuple[str, Path]]:
    found = []
    for path in sorted(SRC.rglob("*.py")):
        rel = path.relative_to(SRC).with_suffix("")
        parts = list(rel.parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        found.append((".".join(parts), path))
    return found


def imported(module: str, path: Path) -> set[str]:
    package = module if path.name == "__init__.py" else module.rsplit(".", 1)[0]
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            names.add(target)
            names.update(f"{target}.{alias.name}" for alias in node.names)
    return names


def violations() -> list[str]:
    found = []
    for module, path in modules():
        here = part_of_module(module)
        assert here in LAYER, f"{module}: a part the contract does not know; add it to LAYER"
        for name in imported(module, path):
            there = part_of_module(name)
            if there is None or there == here or there not in LAYER:
                continue
            if LAYER[there] < LAYER[here] or (here, there) in SIDEWAYS:
                continue
            if LAYER[there] == LAYER[here] == 0:  # the bottom layer's modules use each other
                continue
            found.append(f"{module} imports {name} ({here} may not import {there})")
    return sorted(set(found))


def test_parts_import_downwards_only():
    assert violations() == []


@pytest.mark.parametrize("forbidden", ["daemon", "plugin", "client", "broker1"])
def test_authority_imports_none_of_the_broker(forbidden):
    offenders = [m for m, p in modules() if part_of_module(m) == "authority"
                 and any(part_of_module(n) == forbidden for n in imported(m, p))]
    assert offenders == []


def test_nothing_below_devkit_imports_devkit_or_demo():
    offenders = [f"{m} -> {n}" for m, p in modules()
                 if LAYER[part_of_module(m) or "cli"] < LAYER["devkit"]
                 for n in imported(m, p) if part_of_module(n) in ("devkit", "demo")]
    assert offenders == []


def test_the_contract_sees_a_violation(tmp_path, monkeypatch):
    """The checker itself: a daemon module importing devkit is reported."""
    fake = tmp_path / "authbroker" / "daemon"
    fake.mkdir(parents=True)
    (fake / "bad.py").write_text("from authbroker.devkit import useragent\n")
    monkeypatch.setattr(__import__(__name__), "SRC", tmp_path)
    assert violations() == [
        "authbroker.daemon.bad imports authbroker.devkit (daemon may not import devkit)",
        "authbroker.daemon.bad imports authbroker.devkit.useragent (daemon may not import devkit)",
    ]
