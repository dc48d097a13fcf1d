from django.urls import path

from demo.consumers import BroadcastConsumer, EchoConsumer

websocket_urlpatterns = [
    path("ws/echo/", EchoConsumer.as_asgi()),
    path("ws/broadcast/", BroadcastConsumer.as_asgi()),
]
