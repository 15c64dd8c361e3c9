"""Pure segmentation logic: event time, features, segments, churn.

Nothing in this package imports Faust or Kafka, so every function here can be
tested in microseconds without a broker.
"""

__all__: list[str] = []
