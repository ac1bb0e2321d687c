"""Domain-adaptive pretraining: SpanBERT's span masking and span boundary objective."""
