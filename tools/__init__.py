"""Repository tooling: the control-plane build, the sandbox and the benchmark (``tools.bench``).

A package so that ``python -m tools.bench.run`` works from the repository root.
"""
