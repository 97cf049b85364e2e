"""The JSON API (/v1): models, predict (single and batch), its schemas and their fast path."""
