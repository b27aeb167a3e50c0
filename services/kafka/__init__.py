"""The Kafka driver: the pipeline's stages as a faust-streaming app (see docs/kafka.md).

- :mod:`services.kafka.messages`: what travels on the internal ``prepared`` topic, and the
  encoding of scored interactions, incident events, clusters and dead letters on their topics.
- :mod:`services.kafka.sequencer`: the reorder buffer and the sequence stage's state, and its
  chunked checkpoints. Plain Python, no broker.
- :mod:`services.kafka.app`: the faust app (agents ``score``, ``sequence``, the sinks).
"""
