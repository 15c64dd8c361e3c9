"""The worker: the Faust app, its agents and timers, the pipeline from input
records to outputs and state, the learners' hosts, HTTP views and metrics.
"""

__all__: list[str] = []
