"""`maxine bench live` end to end: a real server, real sockets, a small run."""

from __future__ import annotations

import json

from maxine.training.lab_cli import bench_live_main


def test_bench_live_runs_a_small_scenario_end_to_end(tmp_path, capsys):
    out = tmp_path / "live.json"
    code = bench_live_main(["--requests", "40", "--strategies", "round-robin,p2c-peak-ewma", "--seeds", "1001,1002",
                            "--max-seconds", "60", "--json", str(out), "--no-progress"])
    assert code == 0
    rows = json.loads(out.read_text())["results"]
    assert {r["strategy"] for r in rows} == {"round-robin", "p2c-peak-ewma"}
    for r in rows:
        assert r["p50_ms"] > 0 and 0.0 <= r["error_rate"] <= 1.0 and r["goodput"] > 0
    for r in rows:
        assert r["seeds"] == [1001, 1002]  # each strategy ran on both workloads, averaged
    out = capsys.readouterr().out
    assert "== live-small" in out
    won = out.split("seeds won: ")[1].splitlines()[0]
    assert sum(int(part.split()[-1]) for part in won.split(", ")) == 2, won


def test_bench_live_runs_strategies_side_by_side_in_worker_processes(tmp_path, capsys):
    out = tmp_path / "live.json"
    png = tmp_path / "live.png"
    code = bench_live_main(["--requests", "40", "--strategies", "round-robin,least-response-time", "--seeds", "1001",
                            "--parallel", "2", "--max-seconds", "60", "--json", str(out), "--plot", str(png),
                            "--no-progress"])
    assert code == 0
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    rows = json.loads(out.read_text())["results"]
    assert {r["strategy"] for r in rows} == {"round-robin", "least-response-time"}
    for r in rows:
        assert r["p50_ms"] > 0 and r["goodput"] > 0
        assert r["seeds"] == [1001]


def test_bench_live_rejects_a_parallelism_below_one(capsys):
    assert bench_live_main(["--parallel", "0", "--no-progress"]) == 2
    assert "--parallel" in capsys.readouterr().err


def test_stream_http_keeps_connections_alive_and_drops_a_timed_out_one():
    import asyncio

    from maxine.training.live import StreamHTTP

    async def main():
        opened, seen = [], []

        async def handle(reader, writer):
            opened.append(writer)
            try:
                while True:
                    head = await reader.readuntil(b"\r\n\r\n")
                    length = next((int(line.split(b":")[1]) for line in head.split(b"\r\n")
                                   if line.lower().startswith(b"content-length:")), 0)
                    body = await reader.readexactly(length) if length else b""
                    seen.append((head.split(b" ")[0], body))
                    if head.startswith(b"GET /slow"):
                        await asyncio.sleep(5)
                    writer.write(b"HTTP/1.1 201 Created\r\nContent-Length: 3\r\n\r\nyes")
                    await writer.drain()
            except (asyncio.IncompleteReadError, ConnectionError):
                writer.close()

        server = await asyncio.start_server(handle, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        http = StreamHTTP()
        try:
            assert await http.request(port, "GET", "/a") == (201, b"yes")
            assert await http.request(port, "POST", "/b", b'{"x":1}') == (201, b"yes")
            assert len(opened) == 1  # the second request reused the first connection
            assert seen == [(b"GET", b""), (b"POST", b'{"x":1}')]
            try:
                await asyncio.wait_for(http.request(port, "GET", "/slow"), 0.2)
                raise AssertionError("the slow request did not time out")
            except asyncio.TimeoutError:
                pass
            assert http.idle[port] == []  # the timed-out connection is not reused
            assert await http.request(port, "GET", "/c") == (201, b"yes")
            assert len(opened) == 2
        finally:
            http.close()
            server.close()

    asyncio.run(main())
