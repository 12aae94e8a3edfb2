"""MQTT publishing of change events, against the real Mosquitto on 127.0.0.1:1883."""

from __future__ import annotations

import queue
import socket
import uuid

import httpx
import orjson
import pytest

from conftest import run_server

mqtt = pytest.importorskip("paho.mqtt.client", reason="paho-mqtt not installed (pip install paho-mqtt)")

pytestmark = pytest.mark.timeout(60)


def _broker_or_skip():
    try:
        socket.create_connection(("127.0.0.1", 1883), timeout=1).close()
    except OSError as exc:
        pytest.skip(f"no MQTT broker on 127.0.0.1:1883 ({exc}); start it with: mosquitto -d")


def test_events_are_published_to_topic_per_event():
    _broker_or_skip()
    topic = f"maxine-test/{uuid.uuid4().hex[:10]}"
    got: queue.Queue = queue.Queue()
    sub = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
    subscribed = queue.Queue()
    sub.on_message = lambda c, u, m: got.put((m.topic, m.payload))
    sub.on_subscribe = lambda *a: subscribed.put(True)
    sub.on_connect = lambda c, u, f, rc, p=None: c.subscribe(f"{topic}/#", qos=1)
    sub.connect("127.0.0.1", 1883)
    sub.loop_start()
    try:
        subscribed.get(timeout=5)
        env = {"MAXINE_MQTT_URL": "mqtt://127.0.0.1:1883", "MAXINE_MQTT_TOPIC": topic}
        with run_server(env=env) as srv:
            r = httpx.post(srv.url + "/register", json={"serviceName": "m", "host": "127.0.0.1", "port": 1,
                                                         "metadata": {"version": "1"}})
            assert r.status_code == 200
            assert httpx.request("DELETE", srv.url + "/deregister", json={"nodeId": "m:127.0.0.1:1"}).status_code == 200
            first = got.get(timeout=5)
            second = got.get(timeout=5)
        assert first[0] == f"{topic}/service_registered" and second[0] == f"{topic}/service_deregistered"
        event = orjson.loads(first[1])
        assert event["nodeId"] == "m:127.0.0.1:1" and event["data"]["after"]["metadata"] == {"version": "1"}
        assert orjson.loads(second[1])["id"] > event["id"]
    finally:
        sub.loop_stop()
        sub.disconnect()
