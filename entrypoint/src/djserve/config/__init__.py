"""The CLI's and the validating child's side: every layer of configuration, resolved and checked.

Nothing here runs in a worker or in the serving process: both receive plain data (``djserve.handoff``).
"""
