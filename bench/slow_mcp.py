"""A minimal stateless MCP upstream for bench/fanout.sh: HTTP/1.1 keep-alive on 127.0.0.1:PORT,
answering every JSON-RPC POST after DELAY_MS milliseconds (asyncio.sleep, so concurrent
requests overlap): `initialize` with a small result, `tools/list` with TOOLS tools named
tool_0.., anything else with an empty result. Python stdlib only.

Usage: slow_mcp.py PORT DELAY_MS [TOOLS]
"""

import asyncio
import json
import sys


def answer(msg: dict, tools: int) -> dict:
    method = msg.get("method")
    if method == "initialize":
        result = {"protocolVersion": "2025-11-25", "capabilities": {"tools": {}},
                  "serverInfo": {"name": "slow", "version": "1"}}
    elif method == "tools/list":
        result = {"tools": [{"name": f"tool_{i}", "description": "a tool of the fan-out bench",
                             "inputSchema": {"type": "object"}} for i in range(tools)]}
    else:
        result = {}
    return {"jsonrpc": "2.0", "id": msg.get("id"), "result": result}


async def serve(reader, writer, delay: float, tools: int) -> None:
    try:
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            length = 0
            for line in head.split(b"\r\n")[1:]:
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length":
                    length = int(value.strip())
            body = await reader.readexactly(length) if length else b""
            await asyncio.sleep(delay)
            if body:
                msg = json.loads(body)
                if "id" not in msg:
                    writer.write(b"HTTP/1.1 202 Accepted\r\ncontent-length: 0\r\n\r\n")
                    await writer.drain()
                    continue
                out = json.dumps(answer(msg, tools)).encode()
            else:
                out = b"{}"
            writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: "
                         + str(len(out)).encode() + b"\r\n\r\n" + out)
            await writer.drain()
    except (asyncio.IncompleteReadError, ConnectionError):
        pass
    finally:
        writer.close()


async def main() -> None:
    port, delay = int(sys.argv[1]), int(sys.argv[2]) / 1000
    tools = int(sys.argv[3]) if len(sys.argv) > 3 else 20
    server = await asyncio.start_server(lambda r, w: serve(r, w, delay, tools), "127.0.0.1", port)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(main())
