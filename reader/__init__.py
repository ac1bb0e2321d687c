"""The span reader: SQuAD data, windows, fine-tuning, evaluation and inference.

Importing the package loads nothing heavy: the command line builds its parser from it
without torch. The reader itself is `reader.reader.Reader`, its answers
`reader.postprocess.Answer`.
"""
