"""Benchmarks of the djserve images against hand-written uvicorn, gunicorn and granian (`make bench`)."""
