"""A tiny web shop on a local port: the Admin API listings the shop adapter reads, served from
records a test sets, so a test can change one order between loads and see what the hub keeps."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

from integration_hub.systems import shop

API_KEY = "shpat_stub"


class ShopStub:
    """`records[resource][id]` is what the shop holds now; listings filter by `updated_at`
    (`updated_at_min` inclusive, `updated_at_max` exclusive) and fit on one page."""

    def __init__(self) -> None:
        self.records: dict[str, dict[int, dict]] = {name: {} for name in shop.DESCRIPTIONS}
        stub = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - http.server's name
                url = urlparse(self.path)
                name = url.path.removeprefix(f"{shop.API}/").removesuffix(".json")
                if name not in stub.records or self.headers.get("X-Shopify-Access-Token") != API_KEY:
                    self.send_error(404 if name not in stub.records else 401)
                    return
                query = {k: v[0] for k, v in parse_qs(url.query).items()}
                since, before = query.get("updated_at_min", ""), query.get("updated_at_max")
                # The timestamps are all `YYYY-MM-DDTHH:MM:SSZ`: as text they sort as times.
                rows = sorted(
                    (r for r in stub.records[name].values()
                     if r["updated_at"] >= since and (before is None or r["updated_at"] < before)),
                    key=lambda r: (r["updated_at"], r["id"]),
                )  # fmt: skip
                body = json.dumps({name: rows}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> ShopStub:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()

    def put(self, resource: str, **record) -> None:
        self.records[resource][record["id"]] = record

    def source(self, **kwargs):
        return shop.source(self.url, api_key=API_KEY, **kwargs)
