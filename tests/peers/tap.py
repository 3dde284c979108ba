#!/usr/bin/env python3
"""Transparent stdio tap (stdlib only).

Usage: python tap.py LOGFILE -- COMMAND [ARGS...]

Starts COMMAND and relays, line by line and byte for byte:

* our stdin  -> the child's stdin; every such line is first appended to LOGFILE
  (exactly as received, one line each, flushed at once);
* the child's stdout -> our stdout (flushed after each line).

The child's stderr is inherited. When our stdin reaches EOF the child's stdin is closed.
The tap exits with the child's exit code (128+N if the child died of signal N).
SIGTERM, SIGINT and SIGHUP received by the tap are forwarded to the child.
"""

import os
import signal
import subprocess
import sys
import threading


def usage(message):
    sys.stderr.write(f"tap.py: {message}\nusage: tap.py LOGFILE -- COMMAND [ARGS...]\n")
    sys.exit(2)


def parse_args(argv):
    if len(argv) < 3:
        usage("missing arguments")
    logfile = argv[0]
    if argv[1] != "--":
        usage("expected '--' after LOGFILE")
    command = argv[2:]
    if not command:
        usage("missing COMMAND")
    return logfile, command


def pump_stdin(child, log):
    """Our stdin -> log + child's stdin, one line at a time."""
    src = sys.stdin.buffer
    dst = child.stdin
    try:
        while True:
            line = src.readline()
            if not line:
                break
            log.write(line if line.endswith(b"\n") else line + b"\n")
            try:
                dst.write(line)
                dst.flush()
            except (BrokenPipeError, ValueError, OSError):
                break  # the child no longer reads its stdin
    finally:
        try:
            dst.close()
        except OSError:
            pass


def main():
    logfile, command = parse_args(sys.argv[1:])
    try:
        log = open(logfile, "ab", buffering=0)
    except OSError as e:
        usage(f"cannot open log file {logfile}: {e}")
    try:
        child = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    except OSError as e:
        sys.stderr.write(f"tap.py: cannot start {command[0]}: {e}\n")
        sys.exit(127)

    def forward(signum, _frame):
        try:
            child.send_signal(signum)
        except OSError:
            pass

    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, forward)

    threading.Thread(target=pump_stdin, args=(child, log), daemon=True).start()

    out = sys.stdout.buffer
    reader = child.stdout
    stdout_ok = True
    while True:
        line = reader.readline()
        if not line:
            break
        if stdout_ok:
            try:
                out.write(line)
                out.flush()
            except (BrokenPipeError, OSError):
                stdout_ok = False  # keep draining so the child never blocks on a full pipe
    code = child.wait()
    if code < 0:
        code = 128 + (-code)
    try:
        out.flush()
    except OSError:
        pass
    # The stdin pump may still be blocked in a read; do not wait for it.
    os._exit(code)


if __name__ == "__main__":
    main()
