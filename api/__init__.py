"""SpanQA's interfaces: the `spanqa` command line (and, later, the HTTP service)."""
