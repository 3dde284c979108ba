#!/usr/bin/env python3
"""Scripted stdio MCP server for fault-injection tests (stdlib only).

Speaks newline-delimited JSON-RPC 2.0 on stdin/stdout:

* ``initialize``  -> echoes the client's protocolVersion, serverInfo ``fake-upstream``,
  capabilities ``{"tools": {}}``
* notifications   -> ignored (so are responses sent by the client)
* ``ping``        -> ``{}``
* ``tools/list``  -> tools ``echo``, ``crash``, ``hang``, ``slow``
* ``tools/call``:
    - ``echo``  -> text ``Echo: <arguments.message>``
    - ``crash`` -> the process exits at once with code 3, without answering
    - ``hang``  -> never answered (other requests are still served)
    - ``slow``  -> answered after ``arguments.ms`` milliseconds (on a timer thread)
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
"""

import argparse
import json
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
]


class Server:
    def __init__(self, banner, exit_after_initialize, log_path, close_stdin_after_initialize=False):
        self.banner = banner
        self.exit_after_initialize = exit_after_initialize
        self.close_stdin_after_initialize = close_stdin_after_initialize
        self.log_file = open(log_path, "ab", buffering=0) if log_path else None
        self.out = sys.stdout.buffer
        self.lock = threading.Lock()

    # -- output -----------------------------------------------------------------------

    def write_lines(self, lines):
        """Write whole lines atomically with respect to other threads, flushing at once."""
        with self.lock:
            for line in lines:
                self.out.write(line.encode("utf-8") + b"\n")
            self.out.flush()

    def send(self, message, noise=False):
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
                continue  # a response from the client: nothing to do
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

    def handle(self, req_id, method, params):
        if method == "initialize":
            version = params.get("protocolVersion") if isinstance(params, dict) else None
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
            self.result(req_id, {"tools": TOOLS})
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
            timer = threading.Timer(ms / 1000.0, self.result, (req_id, text_result(f"Slept {ms} ms"), True))
            timer.daemon = True
            timer.start()
        else:
            self.error(req_id, METHOD_NOT_FOUND, f"Unknown tool: {name}", noise=True)

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
    args = parser.parse_args()
    server = Server(args.banner, args.exit_after_initialize, args.log, args.close_stdin_after_initialize)
    try:
        code = server.serve()
    except (BrokenPipeError, KeyboardInterrupt):
        code = 0
    server.shutdown(code)


if __name__ == "__main__":
    main()
