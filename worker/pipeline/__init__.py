"""The import pipeline: named stages with typed hand-offs.

    read → map → validate → stage      (source.RowSource, in a child process: child.SourceProcess)
        → commit                       (commit.BatchCommitter: skip unchanged rows, upsert, checkpoint)
        → warm                         (warm.CacheWarmer: the changed rows into Redis)

The child process reads the sheet, maps the header, validates every row and prepares each batch
for the writer (staging-file lines, row hashes, the JSON of each row's cache document, the query for
what the table holds of the batch's emails): messages.ParsedBatch. It hands batches over a pipe of
bounded depth, so parsing runs on one core while the worker's event loop writes to MySQL and Redis on
the other. The lease (heartbeat, checkpoint with the counters, release, finish) is lease.JobLease;
run.run_import wires the stages together.
"""
