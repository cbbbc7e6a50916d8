"""Drive an MCP endpoint with the official Python SDK (mcp 2.x) and print one JSON object.

Usage: client.py URL [--steps N] [--duration SECONDS] [--header NAME=VALUE]...

Run by the Rust e2e test `python_sdk_through_gateway` with the venv from scripts/peers.sh. It
initializes a session, lists the tools, calls `echo` and `trigger-long-running-operation` with a
progress callback, then leaves the context (the SDK sends DELETE for the session). The JSON on
stdout is what the Rust test asserts on; diagnostics go to stderr.
"""

from __future__ import annotations

import argparse
import json
import sys
import time

import anyio
from mcp.client.session import ClientSession
from mcp.client.streamable_http import streamable_http_client
from mcp.shared._httpx_utils import create_mcp_http_client


def text_of(result) -> list[str]:
    return [block.text for block in result.content if getattr(block, "type", None) == "text"]


async def run(url: str, steps: int, duration: float, headers: dict[str, str]) -> dict:
    out: dict = {"url": url}
    progress: list[dict] = []
    started = time.monotonic()

    async def on_progress(value: float, total: float | None, message: str | None) -> None:
        progress.append(
            {"progress": value, "total": total, "message": message, "t": time.monotonic() - started}
        )

    async with create_mcp_http_client(headers=headers or None) as http:
        async with streamable_http_client(url, http_client=http) as (read, write):
            async with ClientSession(read, write) as session:
                init = await session.initialize()
                out["protocol_version"] = init.protocol_version
                out["server_name"] = init.server_info.name

                tools = await session.list_tools()
                out["tools"] = sorted(tool.name for tool in tools.tools)

                echo = await session.call_tool("echo", {"message": "hi"})
                out["echo"] = {"is_error": bool(echo.is_error), "text": text_of(echo)}

                long_run = await session.call_tool(
                    "trigger-long-running-operation",
                    {"duration": duration, "steps": steps},
                    progress_callback=on_progress,
                )
                out["long_running"] = {
                    "is_error": bool(long_run.is_error),
                    "text": text_of(long_run),
                    "t": time.monotonic() - started,
                }
                out["progress"] = progress
    out["closed"] = True
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("url")
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--duration", type=float, default=1.5)
    parser.add_argument("--header", action="append", default=[], help="NAME=VALUE")
    args = parser.parse_args()
    headers = dict(h.split("=", 1) for h in args.header)
    result = anyio.run(run, args.url, args.steps, args.duration, headers)
    json.dump(result, sys.stdout)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
