"""The scp-operator benchmark: the operator against a real kube-apiserver and the SCP emulator.

Run it with ``make bench`` (full) or ``make bench-smoke`` (small); ``python -m bench.run --help``
lists the knobs. ``docs/benchmarks.md`` explains every number.
"""
