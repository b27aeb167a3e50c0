"""faithwatch core: every stage of the pipeline as pure, deterministic logic.

Nothing in this package performs I/O: no Kafka, ClickHouse, HTTP, environment variables or
wall clock. Time and randomness are passed in. ``services`` wires these stages to the world.
"""
