"""A 2026-07-28 `subscriptions/listen` stream through the gateway, driven by the Python SDK's
high-level client (`Client.listen`, mcp 2.x).

Usage: listen.py URL SPEC-JSON
SPEC keys:
  filter  {tools, prompts, resources: bool, uris: [..]}   what to listen for
  steps   [{call: TOOL, args: {..}, expect: "tools"|"prompts"|"updated"}]: call a tool (if
          named), then wait (20 s at most) for that kind of event on the stream
  end     {signal: "HUP"|"TERM", pid: N, touch: PATH}: append a comment to PATH (if given),
          send the signal to the gateway, then read the stream to its end
Prints one JSON object: honored {tools, prompts, resources, uris}, events [[kind, uri]],
ended ("graceful" | "lost" | "open"), error (text, if listen itself failed).
"""

import json
import os
import signal
import sys

import anyio
from mcp.client.client import Client
from mcp.client.subscriptions import (
    PromptsListChanged,
    ResourcesListChanged,
    ResourceUpdated,
    SubscriptionLost,
    ToolsListChanged,
)


def kind(event):
    if isinstance(event, ToolsListChanged):
        return ["tools", None]
    if isinstance(event, PromptsListChanged):
        return ["prompts", None]
    if isinstance(event, ResourcesListChanged):
        return ["resources", None]
    if isinstance(event, ResourceUpdated):
        return ["updated", event.uri]
    return ["other", repr(event)]


async def main(url, spec):
    out = {"events": [], "ended": "open"}
    f = spec.get("filter", {})
    try:
        async with Client(url, mode="2026-07-28") as c:
            async with c.listen(
                tools_list_changed=f.get("tools", False),
                prompts_list_changed=f.get("prompts", False),
                resources_list_changed=f.get("resources", False),
                resource_subscriptions=f.get("uris", []),
            ) as sub:
                h = sub.honored
                out["honored"] = {
                    "tools": bool(h.tools_list_changed),
                    "prompts": bool(h.prompts_list_changed),
                    "resources": bool(h.resources_list_changed),
                    "uris": sorted(h.resource_subscriptions or []),
                }
                events = sub.__aiter__()
                for step in spec.get("steps", []):
                    if "call" in step:
                        r = await c.call_tool(step["call"], step.get("args", {}))
                        if r.is_error:
                            out["error"] = f"{step['call']} failed: {r.content}"
                            break
                    with anyio.fail_after(20):
                        while True:
                            e = kind(await events.__anext__())
                            out["events"].append(e)
                            if e[0] == step["expect"]:
                                break
                end = spec.get("end")
                if end:
                    if end.get("touch"):
                        # A changed file: the reload makes a new snapshot.
                        with open(end["touch"], "a") as conf:
                            conf.write("\n# changed by listen.py\n")
                    os.kill(end["pid"], getattr(signal, "SIG" + end["signal"]))
                    try:
                        with anyio.fail_after(20):
                            async for e in events:
                                out["events"].append(kind(e))
                        out["ended"] = "graceful"
                    except SubscriptionLost:
                        out["ended"] = "lost"
    except BaseException as e:  # reported, the test decides (leaving a client whose server
        # exited may fail once the stream has ended)
        if out["ended"] == "open":
            out["error"] = f"{type(e).__name__}: {e}"
    print(json.dumps(out))


anyio.run(main, sys.argv[1], json.loads(sys.argv[2]))
