"""Documents to passages to an index: file formats, chunking, SQLite rows, BM25 and FAISS."""
