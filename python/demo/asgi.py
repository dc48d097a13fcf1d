"""ASGI entry point: HTTP goes to Django, WebSockets to the channels consumers."""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "demo.settings")
# Set Django up before anything imports models or settings-dependent code.
django_application = get_asgi_application()

from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from channels.security.websocket import AllowedHostsOriginValidator  # noqa: E402

from demo.routing import websocket_urlpatterns  # noqa: E402

application = ProtocolTypeRouter(
    {
        "http": django_application,
        # Browsers send Origin on WebSocket handshakes; checking it against ALLOWED_HOSTS stops
        # cross-site WebSocket hijacking. Clients must therefore send an allowed Origin.
        "websocket": AllowedHostsOriginValidator(URLRouter(websocket_urlpatterns)),
    }
)
