"""Shared fixtures live in tests/fixtures/, one module per real component."""

pytest_plugins = [
    "fixtures.authority",
    "fixtures.azurite",
    "fixtures.browser",
    "fixtures.bus",
    "fixtures.daemon",
    "fixtures.loopback",
]
