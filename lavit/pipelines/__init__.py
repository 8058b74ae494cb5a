"""Thin glue over the parts: each pipeline is a function with typed arguments the CLI exposes."""
