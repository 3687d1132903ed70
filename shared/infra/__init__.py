"""Process plumbing both sides use: the MySQL pool and migrations, Redis clients, upload storage,
logs, metrics, start-up and page cursors."""
