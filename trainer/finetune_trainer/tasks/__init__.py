"""One module per training task (text classification first)."""
