"""The worker's ASGI stack, outermost first: factory, probes, capacity, observation, static files,
hybrid routing, the pooled threads and the WSGI bridge. It reads its configuration from ``djserve.handoff``.
"""
