"""Caller authentication for triggers: one verifier a module."""
