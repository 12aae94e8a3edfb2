"""Benchmarks that print figures: HTTP throughput, scale, event propagation."""
