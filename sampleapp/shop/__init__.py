"""The shop app: an item catalogue plus the endpoints the stack's tests and benchmarks use."""
