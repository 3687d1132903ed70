"""Code both the gateway and the worker use. Imports neither of them."""
