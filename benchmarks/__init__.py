"""Benchmarks: one script per question, each writing a Markdown fragment to benchmarks/results/;
``python -m benchmarks.report`` assembles them into BENCHMARKS.md. Run from the repository root."""
