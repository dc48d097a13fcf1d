"""WebSocket consumers (ASGI only)."""

import json
import os
from typing import Any

from channels.generic.websocket import AsyncWebsocketConsumer

BROADCAST_GROUP = "broadcast"

# RFC 6455: the endpoint got a data type it cannot accept.
CLOSE_UNSUPPORTED_DATA = 1003


class EchoConsumer(AsyncWebsocketConsumer):
    """Sends every text or binary message straight back."""

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        await self.send(text_data=text_data, bytes_data=bytes_data)


class BroadcastConsumer(AsyncWebsocketConsumer):
    """Relays every text message to every client, the sender included, through the channel layer.

    Each reply is JSON `{"message", "sender_pid", "receiver_pid"}`, so a client sees which worker
    process sent a message and which one delivered it; with Redis they differ across workers.
    """

    # Channels joins these groups on connect and leaves them on disconnect.
    groups = (BROADCAST_GROUP,)

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        if text_data is None:
            await self.close(code=CLOSE_UNSUPPORTED_DATA)
            return
        await self.channel_layer.group_send(
            BROADCAST_GROUP,
            {"type": "broadcast.message", "message": text_data, "sender_pid": os.getpid()},
        )

    async def broadcast_message(self, event: dict[str, Any]) -> None:
        reply = {"message": event["message"], "sender_pid": event["sender_pid"], "receiver_pid": os.getpid()}
        await self.send(text_data=json.dumps(reply))
