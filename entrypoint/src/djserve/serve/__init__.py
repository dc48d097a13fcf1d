"""The serving process and uvicorn's machinery in the workers: launch, supervisor, server, protocols.

Nothing here imports Django. uvicorn is pinned to the minor version whose internals this folder reads.
"""
