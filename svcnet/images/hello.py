"""The seed example's image (`svcnet/hello`): an HTTP server that answers "Hello World!".

    python -m svcnet.images.hello [--port 80] [--message "Hello World!"]

Every GET answers 200 with the message and a newline; SIGTERM stops it at once.
"""

from __future__ import annotations

import argparse
import http.server
import signal
import sys


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="hello")
    p.add_argument("--port", type=int, default=80)
    p.add_argument("--message", default="Hello World!")
    args = p.parse_args(argv)
    body = (args.message + "\n").encode()

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, fmt: str, *a) -> None:
            sys.stderr.write(f"{self.client_address[0]} {fmt % a}\n")

    server = http.server.ThreadingHTTPServer(("", args.port), Handler)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    print(f"hello: serving on :{args.port}", flush=True)
    server.serve_forever()
    return 0


if __name__ == "__main__":
    sys.exit(main())
