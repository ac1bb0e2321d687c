"""Documents to passages to a BM25 + FAISS index (issue 3: not built yet)."""
