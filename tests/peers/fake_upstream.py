#!/usr/bin/env python3
"""Scripted stdio MCP server for fault-injection tests (stdlib only).

Speaks newline-delimited JSON-RPC 2.0 on stdin/stdout:

* ``initialize``  -> echoes the client's protocolVersion (or ``--protocol-version``),
  serverInfo ``fake-upstream``, capabilities ``{"tools": {}}``
* notifications   -> ignored (so are responses sent by the client)
* ``ping``        -> ``{}``
* ``tools/list``  -> tools ``echo``, ``crash``, ``hang``, ``slow``, ``progress``, ``roots``
  (plus ``--extra-tools``), in pages of ``--page-size`` when given
* ``tools/call``:
    - ``echo``  -> text ``Echo: <arguments.message>``
    - ``crash`` -> the process exits at once with code 3, without answering
    - ``hang``  -> never answered (other requests are still served)
    - ``slow``  -> answered after ``arguments.ms`` milliseconds (on a timer thread)
    - ``progress`` -> ``arguments.steps`` (default 3) ``notifications/progress``, one every
      ``arguments.ms`` (default 20) milliseconds, each with the request's
      ``_meta.progressToken`` (none without one) and ``message`` = ``arguments.marker``;
      then text ``Progress <marker>: <steps> steps``
    - ``roots`` -> sends the request ``roots/list`` (id ``"roots-<n>"``) to the client and,
      once the client answers, answers the call with text ``Roots: <uri>,<uri>...``
      (stdio only)
    - ``tool-NN`` (with ``--extra-tools``) and ``--tool`` names -> text ``<name>: <arguments.message>``
    - any other tool -> JSON-RPC error -32601
* any other method -> JSON-RPC error -32601 (this includes ``server/discover``, so the
  ``mcp`` SDK's ``mode="auto"`` probe falls back to ``initialize``)

Options:

* ``--banner``: print the non-JSON line ``MCP Server running on stdio...`` on stdout at
  start, and the two lines ``[db] Connected`` and ``{"not":"jsonrpc"}`` on stdout before
  every tools/call response.
* ``--exit-after-initialize``: exit with code 0 right after answering ``initialize``.
* ``--close-stdin-after-initialize``: on ``notifications/initialized``, close stdin, send a
  ``notifications/message`` saying ``stdin closed``, and keep running without reading (a
  server that stops listening but does not die).
* ``--log FILE``: append every line received on stdin to FILE (flushed at once).
* ``--protocol-version V``: answer ``initialize`` with V whatever the client asked for.
* ``--page-size N``: ``tools/list`` answers N tools per page, with ``nextCursor`` (the
  offset of the next page, as a string) while more remain; a ``cursor`` that is not such
  an offset gets -32602.
* ``--repeat-cursor``: with ``--page-size``, every page (the last one too) says
  ``nextCursor`` = N, the cursor of the second page: a listing that never ends.
* ``--extra-tools N``: also offer the tools ``tool-01`` ... ``tool-N`` (after the others).
* ``--refuse-initialize``: answer ``initialize`` with error -32602.
* ``--echo-description-file FILE``: ``echo``'s description is read from FILE at every
  ``tools/list`` (a server whose tool definitions change).
* ``--tool NAME`` (repeatable): also offer a tool NAME, answering ``NAME: <arguments.message>``
  (after the ``--extra-tools``).
* ``--http``: speak Streamable HTTP instead of stdio, at ``http://127.0.0.1:PORT/mcp``
  (``--port``, default 0: any free port), and print that URL as the first line on stdout.
  A POSTed request is answered with its messages (``application/json`` for one message,
  ``text/event-stream`` for several, e.g. progress); notifications and responses get 202;
  GET gets 405; DELETE gets 200. The answer to ``initialize`` carries
  ``Mcp-Session-Id: fake-session-<hex>``. With ``--log``, every HTTP request is appended as
  one JSON line ``{"http": METHOD, "path": ..., "headers": {lowercase name: value}, "body":
  text}``. ``slow`` and ``progress`` answer within their own request.
"""

import argparse
import http.server
import json
import secrets
import time
import os
import sys
import threading

SERVER_NAME = "fake-upstream"
SERVER_VERSION = "1.0.0"
DEFAULT_PROTOCOL_VERSION = "2025-11-25"
CRASH_EXIT_CODE = 3

METHOD_NOT_FOUND = -32601
INVALID_REQUEST = -32600
INVALID_PARAMS = -32602
PARSE_ERROR = -32700

TOOLS = [
    {
        "name": "echo",
        "description": "Returns 'Echo: <message>'.",
        "inputSchema": {
            "type": "object",
            "properties": {"message": {"type": "string", "description": "Text to echo"}},
            "required": ["message"],
        },
    },
    {
        "name": "crash",
        "description": "Terminates the server process (exit code 3) without answering.",
        "inputSchema": {"type": "object", "properties": {}},
    },
    {
        "name": "hang",
        "description": "Never answers.",
        "inputSchema": {"type": "object", "properties": {}},
    },
    {
        "name": "slow",
        "description": "Answers after 'ms' milliseconds.",
        "inputSchema": {
            "type": "object",
            "properties": {"ms": {"type": "integer", "minimum": 0, "description": "Delay in milliseconds"}},
            "required": ["ms"],
        },
    },
    {
        "name": "progress",
        "description": "Sends 'steps' progress notifications, then answers.",
        "inputSchema": {
            "type": "object",
            "properties": {
                "steps": {"type": "integer", "minimum": 0},
                "ms": {"type": "integer", "minimum": 0},
                "marker": {"type": "string"},
            },
        },
    },
    {
        "name": "roots",
        "description": "Asks the client for its roots (roots/list) and answers with them.",
        "inputSchema": {"type": "object", "properties": {}},
    },
]


def extra_tool(number):
    return named_tool(f"tool-{number:02d}")


def named_tool(name):
    return {
        "name": name,
        "description": f"Returns '{name}: <message>'.",
        "inputSchema": {"type": "object", "properties": {"message": {"type": "string"}}},
    }


class Server:
    def __init__(self, banner, exit_after_initialize, log_path, close_stdin_after_initialize=False,
                 protocol_version=None, page_size=None, extra_tools=0, http=False,
                 tool_names=(), refuse_initialize=False, echo_description_file=None,
                 repeat_cursor=False):
        self.banner = banner
        self.exit_after_initialize = exit_after_initialize
        self.close_stdin_after_initialize = close_stdin_after_initialize
        self.log_file = open(log_path, "ab", buffering=0) if log_path else None
        self.out = sys.stdout.buffer
        self.lock = threading.Lock()
        self.protocol_version = protocol_version
        self.page_size = page_size
        self.repeat_cursor = repeat_cursor
        self.tools = (TOOLS + [extra_tool(n) for n in range(1, extra_tools + 1)]
                      + [named_tool(name) for name in tool_names])
        self.http = http
        self.refuse_initialize = refuse_initialize
        self.echo_description_file = echo_description_file
        # Over HTTP, what a request's handling sends is collected per thread.
        self.local = threading.local()
        # Server-to-client requests awaiting the client's answer: their id -> the call's id.
        self.awaiting = {}
        self.next_server_request = 1

    # -- output -----------------------------------------------------------------------

    def write_lines(self, lines):
        """Write whole lines atomically with respect to other threads, flushing at once."""
        with self.lock:
            for line in lines:
                self.out.write(line.encode("utf-8") + b"\n")
            self.out.flush()

    def send(self, message, noise=False):
        collected = getattr(self.local, "collected", None)
        if collected is not None:
            collected.append(message)
            return
        lines = []
        if noise and self.banner:
            lines += ["[db] Connected", '{"not":"jsonrpc"}']
        lines.append(json.dumps(message, separators=(",", ":")))
        self.write_lines(lines)

    def result(self, req_id, result, noise=False):
        self.send({"jsonrpc": "2.0", "id": req_id, "result": result}, noise)

    def error(self, req_id, code, message, noise=False):
        self.send({"jsonrpc": "2.0", "id": req_id, "error": {"code": code, "message": message}}, noise)

    # -- input ------------------------------------------------------------------------

    def log(self, raw):
        if self.log_file is not None:
            self.log_file.write(raw if raw.endswith(b"\n") else raw + b"\n")

    def serve(self):
        if self.banner:
            self.write_lines(["MCP Server running on stdio..."])
        stdin = sys.stdin.buffer
        while True:
            raw = stdin.readline()
            if not raw:
                return 0
            self.log(raw)
            text = raw.decode("utf-8", errors="replace").strip()
            if not text:
                continue
            try:
                message = json.loads(text)
            except ValueError:
                self.error(None, PARSE_ERROR, "Parse error")
                continue
            if not isinstance(message, dict):
                self.error(None, INVALID_REQUEST, "Invalid Request: batches are not supported")
                continue
            method = message.get("method")
            if not isinstance(method, str):
                self.client_answer(message)
                continue
            if "id" not in message:
                if method == "notifications/initialized" and self.close_stdin_after_initialize:
                    self.stop_reading()
                continue  # a notification: ignored
            self.handle(message["id"], method, message.get("params") or {})

    def stop_reading(self):
        """Close stdin, say so on stdout (after the close, so a client that
        waits for the notice knows the pipe is shut), and never read again."""
        os.close(0)
        self.write_lines([json.dumps({"jsonrpc": "2.0", "method": "notifications/message",
                                      "params": {"level": "info", "data": "stdin closed"}})])
        while True:
            time.sleep(1)

    def client_answer(self, message):
        """A response from the client: the answer to a ``roots/list`` of ours, or nothing."""
        call_id = self.awaiting.pop(message.get("id"), None) if isinstance(message.get("id"), str) else None
        if call_id is None:
            return
        result = message.get("result")
        roots = result.get("roots") if isinstance(result, dict) else None
        if not isinstance(roots, list):
            self.error(call_id, INVALID_PARAMS, f"roots: the client answered {json.dumps(message)}")
            return
        uris = [str(r.get("uri")) for r in roots if isinstance(r, dict)]
        self.result(call_id, text_result("Roots: " + ",".join(uris)))

    def run_later(self, work):
        """Runs ``work`` on a thread of its own (stdio), or at once (HTTP: the answer
        belongs to the request being handled)."""
        if self.http:
            work()
        else:
            threading.Thread(target=work, daemon=True).start()

    def current_tools(self):
        """The tools as listed now: ``echo``'s description read afresh from
        ``--echo-description-file`` when given (a server whose tools change)."""
        if not self.echo_description_file:
            return self.tools
        try:
            with open(self.echo_description_file, encoding="utf-8") as f:
                description = f.read().strip()
        except OSError:
            return self.tools
        return [dict(t, description=description) if t["name"] == "echo" else t for t in self.tools]

    def list_tools(self, req_id, params):
        tools = self.current_tools()
        if not self.page_size:
            self.result(req_id, {"tools": tools})
            return
        cursor = params.get("cursor") if isinstance(params, dict) else None
        start = 0
        if cursor is not None:
            if not isinstance(cursor, str) or not cursor.isdigit() or int(cursor) > len(self.tools):
                self.error(req_id, INVALID_PARAMS, f"Invalid cursor: {cursor!r}")
                return
            start = int(cursor)
        end = start + self.page_size
        page = {"tools": tools[start:end]}
        if self.repeat_cursor:
            page["nextCursor"] = str(self.page_size)
        elif end < len(self.tools):
            page["nextCursor"] = str(end)
        self.result(req_id, page)

    def handle(self, req_id, method, params):
        if method == "initialize" and self.refuse_initialize:
            self.error(req_id, INVALID_PARAMS, "initialize refused (--refuse-initialize)")
        elif method == "initialize":
            version = params.get("protocolVersion") if isinstance(params, dict) else None
            if self.protocol_version:
                version = self.protocol_version
            self.result(
                req_id,
                {
                    "protocolVersion": version if isinstance(version, str) else DEFAULT_PROTOCOL_VERSION,
                    "capabilities": {"tools": {}},
                    "serverInfo": {"name": SERVER_NAME, "version": SERVER_VERSION},
                },
            )
            if self.exit_after_initialize:
                self.shutdown(0)
        elif method == "ping":
            self.result(req_id, {})
        elif method == "tools/list":
            self.list_tools(req_id, params)
        elif method == "tools/call":
            self.call_tool(req_id, params if isinstance(params, dict) else {})
        else:
            self.error(req_id, METHOD_NOT_FOUND, f"Method not found: {method}")

    def call_tool(self, req_id, params):
        name = params.get("name")
        args = params.get("arguments")
        if not isinstance(args, dict):
            args = {}
        if name == "echo":
            self.result(req_id, text_result(f"Echo: {args.get('message', '')}"), noise=True)
        elif name == "crash":
            self.shutdown(CRASH_EXIT_CODE)
        elif name == "hang":
            pass  # never answered
        elif name == "slow":
            ms = args.get("ms", 0)
            if isinstance(ms, bool) or not isinstance(ms, (int, float)) or ms < 0:
                self.error(req_id, INVALID_PARAMS, "slow: 'ms' must be a non-negative number", noise=True)
                return
            if self.http:
                time.sleep(ms / 1000.0)
                self.result(req_id, text_result(f"Slept {ms} ms"), True)
                return
            timer = threading.Timer(ms / 1000.0, self.result, (req_id, text_result(f"Slept {ms} ms"), True))
            timer.daemon = True
            timer.start()
        elif name == "progress":
            self.progress(req_id, params, args)
        elif name == "roots":
            if self.http:
                self.error(req_id, METHOD_NOT_FOUND, "roots: not offered over http")
                return
            server_id = f"roots-{self.next_server_request}"
            self.next_server_request += 1
            self.awaiting[server_id] = req_id
            self.send({"jsonrpc": "2.0", "id": server_id, "method": "roots/list", "params": {}})
        elif isinstance(name, str) and any(t["name"] == name for t in self.tools[len(TOOLS):]):
            self.result(req_id, text_result(f"{name}: {args.get('message', '')}"))
        else:
            self.error(req_id, METHOD_NOT_FOUND, f"Unknown tool: {name}", noise=True)

    def progress(self, req_id, params, args):
        steps, ms, marker = args.get("steps", 3), args.get("ms", 20), str(args.get("marker", ""))
        if not all(isinstance(n, int) and not isinstance(n, bool) and n >= 0 for n in (steps, ms)):
            self.error(req_id, INVALID_PARAMS, "progress: 'steps' and 'ms' must be non-negative integers")
            return
        meta = params.get("_meta")
        token = meta.get("progressToken") if isinstance(meta, dict) else None

        def work():
            for step in range(1, steps + 1):
                time.sleep(ms / 1000.0)
                if token is not None:
                    note = {"progressToken": token, "progress": step, "total": steps, "message": marker}
                    self.send({"jsonrpc": "2.0", "method": "notifications/progress", "params": note})
            self.result(req_id, text_result(f"Progress {marker}: {steps} steps"))

        self.run_later(work)

    # -- Streamable HTTP --------------------------------------------------------------

    def serve_http(self, port):
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *_args):
                pass  # quiet: the tests read --log, not stderr

            def record(self, body):
                if server.log_file is None:
                    return
                entry = {
                    "http": self.command,
                    "path": self.path,
                    "headers": {k.lower(): v for k, v in self.headers.items()},
                    "body": body,
                }
                server.log(json.dumps(entry, separators=(",", ":")).encode("utf-8"))

            def reply(self, status, content_type=None, body=b"", headers=()):
                self.send_response(status)
                for name, value in headers:
                    self.send_header(name, value)
                if content_type:
                    self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self):
                self.record("")
                self.reply(405)

            def do_DELETE(self):
                self.record("")
                self.reply(200)

            def do_POST(self):
                length = int(self.headers.get("Content-Length") or 0)
                text = self.rfile.read(length).decode("utf-8", errors="replace")
                self.record(text)
                try:
                    message = json.loads(text)
                except ValueError:
                    message = None
                if not isinstance(message, dict) or "id" not in message or "method" not in message:
                    self.reply(202)
                    return
                server.local.collected = []
                try:
                    server.handle(message["id"], message["method"], message.get("params") or {})
                    collected = server.local.collected
                finally:
                    server.local.collected = None
                headers = []
                if message["method"] == "initialize":
                    headers.append(("Mcp-Session-Id", "fake-session-" + secrets.token_hex(8)))
                texts = [json.dumps(m, separators=(",", ":")) for m in collected]
                if len(texts) == 1:
                    self.reply(200, "application/json", texts[0].encode("utf-8"), headers)
                else:
                    events = "".join(f"event: message\ndata: {t}\n\n" for t in texts)
                    self.reply(200, "text/event-stream", events.encode("utf-8"), headers)

        httpd = http.server.ThreadingHTTPServer(("127.0.0.1", port), Handler)
        httpd.daemon_threads = True
        self.write_lines([f"http://127.0.0.1:{httpd.server_address[1]}/mcp"])
        httpd.serve_forever()
        return 0

    def shutdown(self, code):
        with self.lock:
            try:
                self.out.flush()
            except OSError:
                pass
        os._exit(code)


def text_result(text):
    return {"content": [{"type": "text", "text": text}], "isError": False}


def main():
    parser = argparse.ArgumentParser(description="Scripted stdio MCP server for fault injection.")
    parser.add_argument("--banner", action="store_true", help="emit non-JSON noise lines on stdout")
    parser.add_argument("--exit-after-initialize", action="store_true", help="exit 0 right after answering initialize")
    parser.add_argument("--close-stdin-after-initialize", action="store_true",
                        help="close stdin right after answering initialize and keep running")
    parser.add_argument("--log", metavar="FILE", help="append every received line to FILE")
    parser.add_argument("--protocol-version", metavar="V", help="answer initialize with this version")
    parser.add_argument("--page-size", type=int, metavar="N", help="tools/list pages of N tools")
    parser.add_argument("--repeat-cursor", action="store_true", help="every page names page 2 next")
    parser.add_argument("--extra-tools", type=int, default=0, metavar="N", help="also offer tool-01 .. tool-N")
    parser.add_argument("--tool", action="append", default=[], metavar="NAME",
                        help="also offer a tool NAME (answers 'NAME: <message>'); repeatable")
    parser.add_argument("--echo-description-file", metavar="FILE",
                        help="read echo's description from FILE at every tools/list")
    parser.add_argument("--refuse-initialize", action="store_true",
                        help="answer initialize with a JSON-RPC error")
    parser.add_argument("--http", action="store_true", help="speak Streamable HTTP on 127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="the HTTP port (default: any free one)")
    args = parser.parse_args()
    if args.page_size is not None and args.page_size < 1:
        parser.error("--page-size must be at least 1")
    server = Server(
        args.banner,
        args.exit_after_initialize,
        args.log,
        args.close_stdin_after_initialize,
        protocol_version=args.protocol_version,
        page_size=args.page_size,
        extra_tools=args.extra_tools,
        tool_names=args.tool,
        refuse_initialize=args.refuse_initialize,
        echo_description_file=args.echo_description_file,
        http=args.http,
        repeat_cursor=args.repeat_cursor,
    )
    try:
        code = server.serve_http(args.port) if args.http else server.serve()
    except (BrokenPipeError, KeyboardInterrupt):
        code = 0
    server.shutdown(code)


if __name__ == "__main__":
    main()
