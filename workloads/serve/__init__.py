"""Inference serving: a continuous-batching engine and an OpenAI-compatible HTTP server."""
