"""The HTTP gateway. Run it with `python -m gateway`."""
