"""The sandbox's local certificate authority: the stand-ins serve HTTPS, as every vendor does.

Created with the world (`trustme`, not a hand-rolled CA) under `$HUB_HOME/sandbox/tls/`:
`ca.pem` (the local CA), `server.pem` / `server.key` (127.0.0.1, localhost, ::1, signed by it)
and `ca-bundle.pem`, the public CAs (certifi) plus the local one. The hub verifies against
that bundle (`hub sandbox status --json` publishes it as `ca_bundle`; `HUB_CA_BUNDLE`), so
trusting the sandbox never stops real vendors from verifying.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import certifi


@dataclass(frozen=True)
class Files:
    ca: Path
    bundle: Path
    cert: Path
    key: Path


def files(home: Path) -> Files:
    folder = home / "sandbox" / "tls"
    return Files(folder / "ca.pem", folder / "ca-bundle.pem", folder / "server.pem", folder / "server.key")


def ensure(home: Path) -> Files:
    """This home's CA and server certificate, created when missing (a world seeded before TLS)."""
    paths = files(home)
    if all(p.is_file() for p in (paths.ca, paths.bundle, paths.cert, paths.key)):
        return paths
    import trustme

    paths.ca.parent.mkdir(parents=True, exist_ok=True)
    ca = trustme.CA(organization_name="Integration Hub sandbox")
    server = ca.issue_cert("127.0.0.1", "localhost", "::1")
    ca.cert_pem.write_to_path(str(paths.ca))
    server.private_key_pem.write_to_path(str(paths.key))
    paths.cert.write_bytes(b"".join(blob.bytes() for blob in server.cert_chain_pems))
    paths.bundle.write_bytes(Path(certifi.where()).read_bytes() + b"\n" + ca.cert_pem.bytes())
    return paths
