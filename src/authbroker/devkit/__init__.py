"""Stand-ins for the outside world (a scripted user, a private bus, the authority and daemon as
child processes, Azurite) for the demo, the tests and the benchmarks only: nothing in client,
plugin, daemon or authority imports this."""
