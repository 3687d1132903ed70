"""Import jobs: the job repository and document, the service (upload, start), parts, events, webhooks."""
