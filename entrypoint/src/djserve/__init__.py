"""Run Django on uvicorn in containers."""
