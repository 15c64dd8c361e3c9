"""``segmenter top`` and the ``make run`` demo: a live view of a running deployment.

:mod:`streams.top.collect` reads the workers' ``/metrics`` and ``/segments``,
:mod:`streams.top.notable` picks the changes worth showing from the output
topics, :mod:`streams.top.render` draws them, :mod:`streams.top.live` runs it.
"""

__all__: list[str] = []
