"""The on-disk index format: generations, SQLite rows, BM25 and FAISS files.

The indexer writes it and the retriever reads it; neither imports the other."""
