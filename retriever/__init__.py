"""BM25, dense and hybrid passage retrieval (issue 3: not built yet)."""
