"""Drive an MCP endpoint with the official Python SDK (mcp 2.x) and print one JSON object.

Usage: client.py URL [--steps N] [--duration SECONDS] [--header NAME=VALUE]...
                     [--transport streamable|sse] [--sampling] [--resources] [--parallel N]

Run by the Rust e2e tests with the venv from scripts/peers.sh. By default it initializes a
session over Streamable HTTP, lists the tools, calls `echo` and `trigger-long-running-operation`
with a progress callback, then leaves the context (the SDK sends DELETE for the session). The
JSON on stdout is what the Rust tests assert on; diagnostics go to stderr.

Options (each adds steps and output keys; the default keys are always there):

  --transport sse  use the SDK's legacy HTTP+SSE client (2024-11-05: GET URL for the event
                   stream, POST to the endpoint it announces) instead of Streamable HTTP.
  --sampling       declare the sampling capability with a callback that answers every
                   `sampling/createMessage` with "sampled: <first user text>"; after `echo`,
                   call `trigger-sampling-request`. Key `sampling`:
                   {"requests": [{"texts", "max_tokens", "system_prompt"}...],
                    "result_text": [...], "is_error": bool}
                   (server-everything registers that tool only for clients declaring sampling).
                   A JSON-RPC error from that call is reported as is_error true plus "error".
  --resources      list resources and read the first; list prompts. Keys
                   `resources`: {"count", "read_uri", "read_ok"} and `prompts`: sorted names.
  --parallel N     last, N concurrent `echo` calls with distinct messages in the same session.
                   Key `parallel`: one boolean per call, "the answer carried its own message".
  --prefix P       the tools above are called `P<name>` (the aggregated /mcp: `everything__`).
  --call NAME=ARGS also call tool NAME with the JSON object ARGS (repeatable). Key `calls`:
                   {NAME: {"is_error", "text"}}.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import time
from typing import Any

import anyio
from mcp import types
from mcp.client.session import ClientSession
from mcp.client.sse import sse_client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared._httpx_utils import create_mcp_http_client

SAMPLING_MODEL = "portcullis-e2e"
SAMPLING_TOOL = "trigger-sampling-request"


def log(*parts: object) -> None:
    print("client.py:", *parts, file=sys.stderr, flush=True)


def text_of(result) -> list[str]:
    return [block.text for block in result.content if getattr(block, "type", None) == "text"]


def message_texts(message: types.SamplingMessage) -> list[str]:
    """Text blocks of one sampling message (content is one block or a list of blocks)."""
    content = message.content
    blocks = content if isinstance(content, list) else [content]
    return [block.text for block in blocks if getattr(block, "type", None) == "text"]


@contextlib.asynccontextmanager
async def open_transport(transport: str, url: str, headers: dict[str, str]):
    """Yield the (read, write) stream pair for the chosen transport."""
    if transport == "sse":
        async with sse_client(url, headers=headers or None) as (read, write):
            yield read, write
        return
    async with create_mcp_http_client(headers=headers or None) as http:
        async with streamable_http_client(url, http_client=http) as (read, write):
            yield read, write


async def run(args: argparse.Namespace, headers: dict[str, str]) -> dict:
    url = args.url
    out: dict[str, Any] = {"url": url}
    progress: list[dict] = []
    sampled: list[dict] = []
    started = time.monotonic()

    async def on_progress(value: float, total: float | None, message: str | None) -> None:
        progress.append(
            {"progress": value, "total": total, "message": message, "t": time.monotonic() - started}
        )

    async def on_sampling(context, params: types.CreateMessageRequestParams) -> types.CreateMessageResult:
        texts = [
            {"role": message.role, "text": text}
            for message in params.messages
            for text in message_texts(message)
        ]
        sampled.append(
            {
                "texts": [t["text"] for t in texts],
                "max_tokens": params.max_tokens,
                "system_prompt": params.system_prompt,
            }
        )
        log(f"sampling request: {sampled[-1]}")
        first_user = next((t["text"] for t in texts if t["role"] == "user"), "")
        return types.CreateMessageResult(
            role="assistant",
            content=types.TextContent(type="text", text=f"sampled: {first_user}"),
            model=SAMPLING_MODEL,
            stop_reason="endTurn",
        )

    session_kwargs: dict[str, Any] = {}
    if args.sampling:
        session_kwargs["sampling_callback"] = on_sampling

    async with open_transport(args.transport, url, headers) as (read, write):
        async with ClientSession(read, write, **session_kwargs) as session:
            init = await session.initialize()
            out["protocol_version"] = init.protocol_version
            out["server_name"] = init.server_info.name
            log(f"initialized: {init.protocol_version} {init.server_info.name} via {args.transport}")

            tools = await session.list_tools()
            out["tools"] = sorted(tool.name for tool in tools.tools)
            # server-everything registers `trigger-sampling-request` while handling
            # notifications/initialized, and only for clients declaring sampling; give a relay that
            # might reorder that notification and this listing a moment before calling it.
            for _ in range(10):
                if not args.sampling or f"{args.prefix}{SAMPLING_TOOL}" in out["tools"]:
                    break
                log(f"{SAMPLING_TOOL} not listed yet: {out['tools']}")
                await anyio.sleep(0.2)
                tools = await session.list_tools()
                out["tools"] = sorted(tool.name for tool in tools.tools)

            echo = await session.call_tool(f"{args.prefix}echo", {"message": "hi"})
            out["echo"] = {"is_error": bool(echo.is_error), "text": text_of(echo)}

            if args.sampling:
                try:
                    sampling = await session.call_tool(
                        f"{args.prefix}{SAMPLING_TOOL}",
                        {"prompt": args.sampling_prompt, "maxTokens": args.sampling_max_tokens},
                    )
                    out["sampling"] = {
                        "requests": sampled,
                        "result_text": text_of(sampling),
                        "is_error": bool(sampling.is_error),
                    }
                except Exception as exc:  # a JSON-RPC error (e.g. unknown tool): report, go on
                    log(f"{SAMPLING_TOOL} failed: {exc!r}")
                    out["sampling"] = {
                        "requests": sampled,
                        "result_text": [],
                        "is_error": True,
                        "error": f"{type(exc).__name__}: {exc}",
                    }

            calls: dict[str, Any] = {}
            for spec in args.call:
                name, _, raw = spec.partition("=")
                result = await session.call_tool(name, json.loads(raw or "{}"))
                calls[name] = {"is_error": bool(result.is_error), "text": text_of(result)}
            out["calls"] = calls

            long_run = await session.call_tool(
                f"{args.prefix}trigger-long-running-operation",
                {"duration": args.duration, "steps": args.steps},
                progress_callback=on_progress,
            )
            out["long_running"] = {
                "is_error": bool(long_run.is_error),
                "text": text_of(long_run),
                "t": time.monotonic() - started,
            }
            out["progress"] = progress

            if args.resources:
                listed = await session.list_resources()
                resources = listed.resources
                report: dict[str, Any] = {"count": len(resources), "read_uri": None, "read_ok": False}
                if resources:
                    uri = str(resources[0].uri)
                    report["read_uri"] = uri
                    read_result = await session.read_resource(uri)
                    report["read_ok"] = bool(read_result.contents) and all(
                        str(c.uri) == uri for c in read_result.contents
                    )
                out["resources"] = report
                prompts = await session.list_prompts()
                out["prompts"] = sorted(prompt.name for prompt in prompts.prompts)

            if args.parallel > 0:
                matched: list[bool] = [False] * args.parallel

                async def one(i: int) -> None:
                    message = f"parallel-{i}-{time.monotonic_ns()}"
                    result = await session.call_tool(f"{args.prefix}echo", {"message": message})
                    texts = text_of(result)
                    matched[i] = not result.is_error and any(
                        text == f"Echo: {message}" or text.endswith(message) for text in texts
                    )
                    if not matched[i]:
                        log(f"parallel call {i} sent {message!r}, got {texts!r}")

                async with anyio.create_task_group() as tg:
                    for i in range(args.parallel):
                        tg.start_soon(one, i)
                out["parallel"] = matched
    out["closed"] = True
    return out


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("url")
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--duration", type=float, default=1.5)
    parser.add_argument("--header", action="append", default=[], help="NAME=VALUE")
    parser.add_argument("--transport", choices=["streamable", "sse"], default="streamable")
    parser.add_argument("--sampling", action="store_true")
    parser.add_argument("--sampling-prompt", default="portcullis sampling probe")
    parser.add_argument("--sampling-max-tokens", type=int, default=32)
    parser.add_argument("--resources", action="store_true")
    parser.add_argument("--parallel", type=int, default=0)
    parser.add_argument("--prefix", default="")
    parser.add_argument("--call", action="append", default=[], help="NAME=JSON")
    args = parser.parse_args()
    headers = dict(h.split("=", 1) for h in args.header)
    result = anyio.run(run, args, headers)
    json.dump(result, sys.stdout)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
