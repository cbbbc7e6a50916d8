"""The Python SDK's high-level client (`mcp.client.client.Client`, mcp 2.x) in one connection
mode: list the tools, call one with a progress callback, print one JSON object.

Usage: modes.py URL MODE TOOL ARGS-JSON   (MODE: legacy | auto | 2026-07-28)
Keys: tools (the first five names, sorted), call {is_error, text}, progress, protocol.
"""

import anyio, sys, json
from mcp.client.client import Client

async def main(url, mode, tool, args):
    out = {}
    async with Client(url, mode=mode) as c:
        tools = await c.list_tools()
        out["tools"] = sorted(t.name for t in tools.tools)[:5]
        progress = []
        async def on_progress(p, total, msg):
            progress.append(p)
        r = await c.call_tool(tool, json.loads(args), progress_callback=on_progress)
        out["call"] = {"is_error": bool(r.is_error), "text": [b.text for b in r.content if getattr(b, "type", None) == "text"]}
        out["progress"] = progress
        out["protocol"] = getattr(c, "protocol_version", None)
    print(json.dumps(out))

anyio.run(main, sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4])
