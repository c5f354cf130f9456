"""authbroker's performance suite, run by hand: ``make bench`` or ``python -m benchmarks NAME``.

Every benchmark measures its baseline in the same run and reports medians and ratios.
"""
