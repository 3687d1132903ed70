"""HTTP plumbing: the middleware, auth, parameters, problem documents, responses, rate limits, request metrics."""
