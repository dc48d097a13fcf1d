"""A project's asgi.py that is more than Django's handler: a middleware around it, and an app mounted beside it."""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "mysite.settings")
MOUNT = "/sub/"


async def mounted(scope, receive, send):
    """A plain ASGI app: what it answers shows that it, not Django, served the request."""
    body = f"mounted app: path={scope['path']} root_path={scope.get('root_path', '')}\n".encode()
    headers = [(b"content-type", b"text/plain"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": body})


class Wrapped:
    """A middleware as users write them: it adds a response header, and serves MOUNT with another app."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http" and scope["path"].removeprefix(scope.get("root_path", "")).startswith(MOUNT):
            await mounted(scope, receive, send)
            return

        async def wrapped_send(message):
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", ()), (b"x-wrapped", b"yes")]}
            await send(message)

        await self.app(scope, receive, wrapped_send)


application = Wrapped(get_asgi_application())
