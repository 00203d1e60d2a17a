"""Mélange: pick the cheapest mix of GPU types to serve an LLM under a latency SLO."""

__version__ = "0.1.0"
