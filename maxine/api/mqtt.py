"""Optional MQTT publishing of change events (``MAXINE_MQTT_URL``).

Each event goes to ``<topic>/<event>`` (QoS 1) as the same JSON document the
SSE stream and ``/events`` carry. paho-mqtt runs its network loop in its own
thread and reconnects by itself; ``publish`` is thread-safe and never blocks
the event loop (messages queue while the broker is away, bounded).
"""

from __future__ import annotations

import logging
from urllib.parse import urlparse

log = logging.getLogger("maxine.mqtt")

MAX_QUEUED = 10000


class MqttPublisher:
    def __init__(self, url: str, topic: str, client_id: str | None = None):
        import paho.mqtt.client as mqtt

        parsed = urlparse(url if "://" in url else f"mqtt://{url}")
        self.host = parsed.hostname or "127.0.0.1"
        self.port = parsed.port or 1883
        self.topic = topic.rstrip("/")
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id or "",
                                  clean_session=True)
        if parsed.username:
            self.client.username_pw_set(parsed.username, parsed.password)
        self.client.max_queued_messages_set(MAX_QUEUED)
        self.client.reconnect_delay_set(0.5, 10)
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = self._on_disconnect
        self.connected = False
        self.published = 0
        self.dropped = 0

    def _on_connect(self, client, userdata, flags, reason_code, properties=None):
        self.connected = not reason_code.is_failure
        log.info("MQTT connected to %s:%d (%s)", self.host, self.port, reason_code)

    def _on_disconnect(self, client, userdata, flags, reason_code, properties=None):
        self.connected = False
        log.warning("MQTT disconnected (%s); reconnecting", reason_code)

    def start(self) -> None:
        self.client.connect_async(self.host, self.port, keepalive=30)
        self.client.loop_start()

    def publish(self, event) -> None:
        info = self.client.publish(f"{self.topic}/{event.event}", event.json, qos=1)
        if info.rc == 0:
            self.published += 1
        else:
            self.dropped += 1

    def stop(self) -> None:
        try:
            self.client.disconnect()
        finally:
            self.client.loop_stop()

    def status(self) -> dict:
        return {"connected": self.connected, "published": self.published, "dropped": self.dropped,
                "broker": f"{self.host}:{self.port}", "topic": self.topic}
