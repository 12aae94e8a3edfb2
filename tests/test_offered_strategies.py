"""``maxine serve --strategies``: a server offers only the strategies it is
told to, the first is the default, a client report feeds only their learners,
and a name that does not exist stops the server before it starts."""

import subprocess
import sys

import httpx
import pytest

from maxine.api.operations import Maxine
from maxine.settings import Settings

from conftest import run_server


def test_a_server_offers_only_its_strategies_and_the_first_is_the_default():
    with run_server(env={"MAXINE_STRATEGIES": "least-response-time, round-robin", "MAXINE_ML": "false"}) as srv:
        with httpx.Client(base_url=srv.url, timeout=10) as http:
            node = http.post("/register", json={"serviceName": "offer", "host": "127.0.0.1", "port": 7001}).json()
            picked = http.get("/discover", params={"serviceName": "offer"})
            assert picked.status_code == 200 and picked.json()["strategy"] == "least-response-time"
            refused = http.get("/discover", params={"serviceName": "offer", "loadBalancing": "c3"})
            assert refused.status_code == 400
            assert refused.json()["validStrategies"] == ["least-response-time", "round-robin"]
            reported = http.post("/record-response-time", json={"nodeId": node["nodeId"], "responseTime": 3.0})
            assert reported.status_code == 200


def test_only_the_offered_learners_hear_client_reports():
    offered = Maxine(Settings(strategies="round-robin,c3"))
    assert [s.name for s in offered.balancers.observers] == ["c3"]
    assert len(Maxine().balancers.observers) > 3  # every built-in: c3, advanced-ml, predictive, ai-driven, ...


def test_an_unknown_strategy_stops_the_server_with_a_clear_message():
    result = subprocess.run([sys.executable, "-m", "maxine", "serve", "--strategies", "round-robin,nope", "--port", "1"],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode != 0
    assert "unknown strategies nope" in result.stderr
    with pytest.raises(ValueError, match="unknown strategies nope"):
        Maxine(Settings(strategies="nope"))
