"""SpanQA: retrieval-augmented question answering with exact answer spans.

The repository's top-level folders are this package's subpackages, in the order data
flows through them: `indexer` (documents -> passages -> an index), `index` (the on-disk
index format both sides share), `retriever` (passages for a question), `reader` (answer
spans), `api` (the `spanqa` command and the HTTP service). Beneath them, `runtime` runs
models (devices, precision, the hub, compiled ONNX/OpenVINO graphs) and `core` holds
paths and strict JSON. See DEVELOPERS.md for one line on every module.
"""
