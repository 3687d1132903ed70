"""Helpers for the tests: data builders, process runners, a TCP proxy for outages."""
