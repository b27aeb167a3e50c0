"""Shells around the pure core: CLI, drivers, storage adapters and settings."""
