"""One HTTP/1.1 exchange over an asyncio stream: what the benchmarks use where an HTTP
client library would cost more than the server they measure."""

from __future__ import annotations


def content_length(head: bytes) -> int:
    """The Content-Length of a request or response head (0 if absent)."""
    for line in head.split(b"\r\n")[1:]:
        if line[:15].lower() == b"content-length:":
            return int(line[15:])
    return 0


async def exchange(reader, writer, method: str, target: str, body: bytes = b"",
                   host: str = "127.0.0.1") -> tuple[int, bytes]:
    """Send one request on a kept-alive connection and read its answer: (status, body)."""
    head = f"{method} {target} HTTP/1.1\r\nHost: {host}\r\n"
    if body:
        head += f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
    writer.write(head.encode() + b"\r\n" + body)
    answer = await reader.readuntil(b"\r\n\r\n")
    length = content_length(answer)
    return int(answer.split(b" ", 2)[1]), (await reader.readexactly(length) if length else b"")
