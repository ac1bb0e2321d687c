"""Passages for a question: BM25, dense and hybrid retrieval over a built index."""
