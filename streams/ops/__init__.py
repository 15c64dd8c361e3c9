"""Operating a deployment: the `segmenter` CLI, the local broker, topics,
preflight checks, producing and tailing topics, the live view (`segmenter top`).
"""

__all__: list[str] = []
