"""One small module per experiment: its runs (through the API) and its plots (from stored
results)."""
