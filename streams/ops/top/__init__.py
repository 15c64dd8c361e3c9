"""``segmenter top`` and the ``make run`` demo: a live view of a running deployment.

:mod:`streams.ops.top.collect` reads the workers' ``/metrics`` and ``/segments``,
:mod:`streams.ops.top.notable` picks the changes worth showing from the output
topics, :mod:`streams.ops.top.render` draws them, :mod:`streams.ops.top.live` runs it.
"""

__all__: list[str] = []
