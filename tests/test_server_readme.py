"""The README's Serving snippets (Python and Node) run as written against a TLS server with the
self-signed certificate the README's openssl line makes; only the port is the test's own."""
from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from server_support import LoopbackServer, scripted_sessions

ROOT = Path(__file__).parents[1]
NODE_DIR = Path(__file__).parent / "node"


def snippet(first_line: str) -> str:
    """The fenced code block of the README that starts with `first_line`."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    for block in re.findall(r"```[a-z]*\n(.*?)```", readme, flags=re.S):
        if block.startswith(first_line):
            return block
    raise AssertionError(f"no README snippet starting with {first_line!r}")


def openssl_line() -> list[str]:
    """The README's self-signed certificate command, as an argument list."""
    block = snippet("openssl req")
    command = block.split("\n.venv/bin/stepvoice")[0].replace("\\\n", " ")
    import shlex

    return shlex.split(command)


def test_readme_snippets_run_as_written(tmp_path):
    subprocess.run(openssl_line(), cwd=tmp_path, check=True, capture_output=True, timeout=60)
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    factory = scripted_sessions([{"text": "Hello from stepvoice."}])
    server = LoopbackServer(factory, tls=(cert, key))
    try:
        port = str(server.port)
        py = tmp_path / "realtime_hello.py"
        py.write_text(snippet("# realtime_hello.py").replace("8765", port))
        run = subprocess.run([sys.executable, str(py)], env={**os.environ, "SSL_CERT_FILE": str(cert)},
                             capture_output=True, text=True, timeout=60)
        assert run.returncode == 0, run.stderr[-2000:]
        assert run.stdout == "Hello from stepvoice.\n[completed]\n"

        js = tmp_path / "realtime_hello.mjs"
        js.write_text(snippet("// realtime_hello.mjs").replace("8765", port))
        (tmp_path / "node_modules").symlink_to(NODE_DIR / "node_modules")  # `npm install openai ws` (tests/node)
        run = subprocess.run(["node", str(js)], cwd=tmp_path, env={**os.environ, "NODE_EXTRA_CA_CERTS": str(cert)},
                             capture_output=True, text=True, timeout=60)
        assert run.returncode == 0, run.stderr[-2000:]
        assert run.stdout == "Hello from stepvoice.\n[completed]\n"

        # the page too is served over https with the same certificate
        import ssl
        import urllib.request

        with urllib.request.urlopen(f"https://127.0.0.1:{port}/", timeout=20,
                                    context=ssl.create_default_context(cafile=str(cert))) as page:
            assert page.status == 200 and b"<html" in page.read().lower()
    finally:
        server.close()
