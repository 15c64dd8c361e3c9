"""Kafka wiring of Segmenter: the Faust app, agents, HTTP views, CLI and tools.

This is the only package that talks to Kafka; the logic it calls lives in
:mod:`models` and :mod:`schemas`.
"""

__all__: list[str] = []
