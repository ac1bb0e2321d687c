"""SpanQA's interfaces: the `spanqa` command line and the HTTP service."""
