"""Tools around the worker: the simulator and its persona modes, the
benchmarks, the evaluation and quality reports, public histories.
"""

__all__: list[str] = []
