"""Scripts over the benchmark cases: reports, summaries, asv build steps (`python -m benchmarks.tools.NAME`)."""
