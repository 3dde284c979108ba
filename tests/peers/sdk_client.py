#!/usr/bin/env python3
"""Test client built on the official ``mcp`` Python SDK (2.3.0), stdio transport.

Usage:
  python sdk_client.py [--mode auto|legacy|2026-07-28] [--env K=V ...] [--timeout S]
                       [--request-timeout S] [--no-output-validation] [--verbose]
                       [--list] [--call NAME JSON_ARGS] [--list-resources]
                       [--read-resource URI] [--list-prompts] [--get-prompt NAME JSON_ARGS] ...
                       -- COMMAND [ARGS...]

  python sdk_client.py --url URL [--header K=V ...] [options] [operations ...]

Starts COMMAND as a stdio MCP server (or, with --url, connects over Streamable HTTP
sending every --header on each request) (with the full current environment plus every
--env K=V), runs the operations in command-line order and prints ONE JSON document:

  {"protocolVersion": "...", "serverInfo": {...} | null, "ops": [...]}

Op entries:
  {"op":"list","tools":[name,...]}
  {"op":"list-resources","resources":[uri,...]}
  {"op":"list-prompts","prompts":[name,...]}
  {"op":"call","name":N,"isError":bool,"text":"<text content joined with \\n>"}
      (+ "structuredContent" when the result has one)
  {"op":"read-resource","uri":U,"text":"..."}
  {"op":"get-prompt","name":N,"text":"..."}
A JSON-RPC error answer replaces the result fields with
  "error":{"code":int,"message":str,"data":any}
and any other client-side failure of one op (e.g. a result the SDK rejects) with
  "exception":{"type":str,"message":str}
If the overall --timeout runs out during an op, that op gets
  "error":{"code":-32001,"message":"sdk_client: overall timeout ...","data":null}
and the remaining ops are not run.

Exit status: 0 whenever the connection was established (whatever the ops returned),
2 when the connection itself failed (message on stderr) or on a usage error.
"""

import argparse
import json
import logging
import os
import sys
import threading

REQUEST_TIMEOUT_CODE = -32001  # the SDK's REQUEST_TIMEOUT code, reused for the overall deadline


class OpAction(argparse.Action):
    """Append (kind, values) to the shared, ordered ``ops`` list."""

    def __call__(self, parser, namespace, values, option_string=None):
        ops = getattr(namespace, "ops", None) or []
        kind = self.const
        if kind in ("call", "get-prompt"):
            name, raw = values
            try:
                arguments = json.loads(raw)
            except ValueError as e:
                parser.error(f"{option_string} {name}: JSON_ARGS is not valid JSON: {e}")
            if not isinstance(arguments, dict):
                parser.error(f"{option_string} {name}: JSON_ARGS must be a JSON object")
            ops.append((kind, name, arguments))
        elif kind == "read-resource":
            ops.append((kind, values, None))
        else:
            ops.append((kind, None, None))
        namespace.ops = ops


def parse_env(parser, items):
    env = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            parser.error(f"--env expects K=V, got {item!r}")
        env[key] = value
    return env


def parse_command_line(argv):
    parser = argparse.ArgumentParser(
        prog="sdk_client.py",
        usage="%(prog)s [options] [operations ...] -- COMMAND [ARGS...]",
        description="Drive a stdio MCP server with the official mcp SDK and print one JSON document.",
    )
    parser.add_argument("--mode", default="auto", choices=["auto", "legacy", "2026-07-28"])
    parser.add_argument("--env", action="append", default=[], metavar="K=V", help="extra environment for COMMAND")
    parser.add_argument("--url", help="connect to this Streamable HTTP endpoint instead of running COMMAND")
    parser.add_argument("--header", action="append", default=[], metavar="K=V", help="HTTP header for --url")
    parser.add_argument("--timeout", type=float, default=60.0, metavar="S", help="overall deadline (default 60)")
    parser.add_argument(
        "--request-timeout", type=float, default=None, metavar="S", help="per-request read timeout (default: none)"
    )
    parser.add_argument(
        "--no-output-validation",
        action="store_true",
        help="skip the SDK's output-schema check after a successful call (which may send an extra tools/list)",
    )
    parser.add_argument("--verbose", action="store_true", help="debug logging with full tracebacks on stderr")
    ops = parser.add_argument_group("operations (run in the order given)")
    ops.add_argument("--list", action=OpAction, nargs=0, const="list", help="tools/list, every page")
    ops.add_argument("--call", action=OpAction, nargs=2, const="call", metavar=("NAME", "JSON_ARGS"), help="tools/call")
    ops.add_argument("--list-resources", action=OpAction, nargs=0, const="list-resources", help="resources/list")
    ops.add_argument("--read-resource", action=OpAction, const="read-resource", metavar="URI", help="resources/read")
    ops.add_argument("--list-prompts", action=OpAction, nargs=0, const="list-prompts", help="prompts/list")
    ops.add_argument(
        "--get-prompt", action=OpAction, nargs=2, const="get-prompt", metavar=("NAME", "JSON_ARGS"), help="prompts/get"
    )

    if "--" not in argv:
        args = parser.parse_args(argv)  # handles --help and reports unknown options first
        if not args.url:
            parser.error("missing '-- COMMAND [ARGS...]' (or --url URL)")
        command = []
    else:
        split = argv.index("--")
        args = parser.parse_args(argv[:split])
        command = argv[split + 1 :]
        if args.url:
            parser.error("give either --url or '-- COMMAND', not both")
        if not command:
            parser.error("missing COMMAND after '--'")
    args.command = command
    args.headers = parse_env(parser, args.header)
    args.ops = getattr(args, "ops", None) or []
    args.extra_env = parse_env(parser, args.env)
    if args.timeout <= 0:
        parser.error("--timeout must be positive")
    return args


# -- result shaping -------------------------------------------------------------------


def dump(model):
    if model is None:
        return None
    return model.model_dump(mode="json", by_alias=True, exclude_none=True)


def block_text(block):
    """Text of one content block ('' for non-text blocks)."""
    if getattr(block, "type", None) == "text":
        return block.text
    resource = getattr(block, "resource", None)  # embedded resource
    if resource is not None and getattr(resource, "text", None) is not None:
        return resource.text
    return None


def join_text(blocks):
    texts = [t for t in (block_text(b) for b in blocks) if t is not None]
    return "\n".join(texts)


def describe_exception(exc):
    """Innermost meaningful exception of a (possibly nested) exception group."""
    while isinstance(exc, BaseExceptionGroup) and len(exc.exceptions) >= 1:
        exc = exc.exceptions[0]
    return exc


def exception_entry(exc):
    exc = describe_exception(exc)
    return {"type": type(exc).__name__, "message": str(exc)}


# The most tools/list pages one --list reads.
MAX_PAGES = 100


async def run_op(client, op, mcp_error):
    kind, name, arguments = op
    entry = {"op": kind}
    if kind in ("call", "get-prompt"):
        entry["name"] = name
    elif kind == "read-resource":
        entry["uri"] = name
    try:
        if kind == "list":
            # Every page, as a client that wants the whole catalog reads it.
            entry["tools"], cursor, pages = [], None, 0
            while pages < MAX_PAGES:
                result = await client.list_tools(cursor=cursor)
                entry["tools"] += [t.name for t in result.tools]
                pages += 1
                cursor = result.next_cursor
                if cursor is None:
                    break
            entry["pages"] = pages
        elif kind == "list-resources":
            result = await client.list_resources()
            entry["resources"] = [str(r.uri) for r in result.resources]
        elif kind == "list-prompts":
            result = await client.list_prompts()
            entry["prompts"] = [p.name for p in result.prompts]
        elif kind == "call":
            result = await client.call_tool(name, arguments)
            entry["isError"] = bool(result.is_error)
            entry["text"] = join_text(result.content)
            if result.structured_content is not None:
                entry["structuredContent"] = result.structured_content
        elif kind == "read-resource":
            result = await client.read_resource(name)
            entry["text"] = "\n".join(c.text for c in result.contents if getattr(c, "text", None) is not None)
        elif kind == "get-prompt":
            result = await client.get_prompt(name, {k: str(v) for k, v in arguments.items()})
            blocks = []
            for message in result.messages:
                content = message.content
                blocks.extend(content if isinstance(content, list) else [content])
            entry["text"] = join_text(blocks)
    except mcp_error as e:
        entry["error"] = {"code": e.code, "message": e.message, "data": e.data}
    except Exception as e:  # noqa: BLE001 - one failed op must not end the run
        entry["exception"] = exception_entry(e)
    return entry


# -- main -----------------------------------------------------------------------------


class ConnectFailed(Exception):
    pass


async def session(args, doc):
    import anyio
    from mcp import Client, MCPError, StdioServerParameters

    if args.url:
        import httpx2
        from mcp.client.streamable_http import streamable_http_client

        http = httpx2.AsyncClient(headers=args.headers, timeout=args.request_timeout or 30.0)
        params = streamable_http_client(args.url, http_client=http)
    else:
        params = StdioServerParameters(
            command=args.command[0],
            args=args.command[1:],
            env={**os.environ, **args.extra_env},
        )
    client = Client(
        params,
        mode=args.mode,
        cache=None,  # every op must reach the wire
        read_timeout_seconds=args.request_timeout,
    )
    state = {"connected": False, "current": None}

    try:
        with anyio.move_on_after(args.timeout) as deadline:
            async with client as c:
                state["connected"] = True
                doc["protocolVersion"] = c.protocol_version
                doc["serverInfo"] = dump(c.server_info)
                if args.no_output_validation:

                    async def skip_validation(_name, _result):
                        return None

                    c.session.validate_tool_result = skip_validation
                for op in args.ops:
                    state["current"] = op
                    doc["ops"].append(await run_op(c, op, MCPError))
                    state["current"] = None
    except BaseException as e:  # noqa: BLE001
        if isinstance(e, (KeyboardInterrupt, SystemExit)):
            raise
        if not state["connected"]:
            raise ConnectFailed(f"{type(describe_exception(e)).__name__}: {describe_exception(e)}") from e
        # Connected: a failure while closing the connection must not lose the results.
        sys.stderr.write(f"sdk_client: warning: error while closing the connection: {exception_entry(e)}\n")

    if deadline.cancelled_caught:
        if not state["connected"]:
            raise ConnectFailed(f"timed out after {args.timeout:g}s while connecting")
        op = state["current"]
        if op is not None:
            kind, name, _ = op
            entry = {"op": kind}
            if kind in ("call", "get-prompt"):
                entry["name"] = name
            elif kind == "read-resource":
                entry["uri"] = name
            entry["error"] = {
                "code": REQUEST_TIMEOUT_CODE,
                "message": f"sdk_client: overall timeout of {args.timeout:g}s reached",
                "data": None,
            }
            doc["ops"].append(entry)


class OneLineErrors(logging.Filter):
    """Shrink SDK log records that carry a traceback (e.g. a non-JSON stdout line) to one line."""

    def filter(self, record):
        if record.exc_info and record.exc_info[1] is not None:
            exc = record.exc_info[1]
            first = (str(exc).splitlines() or [""])[0]
            record.msg = f"{record.getMessage()}: {type(exc).__name__}: {first}"
            record.args = None
            record.exc_info = None
            record.exc_text = None
        return True


def start_watchdog(seconds):
    """Last-resort guard: never outlive the deadline by much, whatever happens inside."""

    def fire():
        sys.stderr.write(f"sdk_client: hard timeout after {seconds:g}s, aborting\n")
        sys.stderr.flush()
        os._exit(2)

    timer = threading.Timer(seconds, fire)
    timer.daemon = True
    timer.start()


def main():
    args = parse_command_line(sys.argv[1:])
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("sdk_client: %(levelname)s %(name)s: %(message)s"))
    if not args.verbose:
        handler.addFilter(OneLineErrors())
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.WARNING, handlers=[handler])
    # The stdio transport's shutdown is bounded (about 6 s worst case); leave room for it.
    start_watchdog(args.timeout + 15)

    import anyio

    doc = {"protocolVersion": None, "serverInfo": None, "ops": []}
    try:
        anyio.run(session, args, doc)
    except ConnectFailed as e:
        sys.stderr.write(f"sdk_client: connection failed: {e}\n")
        sys.stderr.flush()
        os._exit(2)
    out = json.dumps(doc, ensure_ascii=False, separators=(",", ":")) + "\n"
    sys.stdout.buffer.write(out.encode("utf-8"))
    sys.stdout.buffer.flush()
    sys.exit(0)


if __name__ == "__main__":
    main()
