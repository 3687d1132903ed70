"""Import jobs: the queue contract (arq names, ids, enqueueing), the options, the job repository and document,
the service (upload, preview, start, cancel, revert, reads), parts of a split job, remembered mappings, live
events and webhooks."""
