"""Operator use cases the management API, the console and the CLI share."""
