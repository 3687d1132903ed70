"""Customers: the field registry (fields), row schemas, the repository (SQL), the history repository, the
Redis cache, the service the API calls, and exports."""
