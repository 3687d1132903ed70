"""Customers: the field registry, schemas, the repository (SQL), the cache, the service, exports."""
