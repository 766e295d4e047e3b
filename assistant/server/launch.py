"""Start `stepvoice serve` in a child process and learn its port (benchmarks, tests, scripts)."""
from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path
from typing import Mapping, Sequence

from stepvoice.engine.errors import StepvoiceError

ADDRESS = re.compile(r"wss?://127\.0\.0\.1:(\d+)/v1/realtime")


def spawn_server(args: Sequence[str], env: Mapping[str, str], log: Path) -> tuple[subprocess.Popen, int]:
    """`stepvoice serve --port 0 ARGS...`; returns the process and the port it announced.
    Its stderr goes to `log` (a file, not a pipe: a full pipe would stall the server)."""
    with open(log, "w") as err:  # the child keeps its own copy
        proc = subprocess.Popen([sys.executable, "-m", "stepvoice", "serve", "--port", "0", *args],
                                stdout=subprocess.PIPE, stderr=err, text=True, env=dict(env))
    line = proc.stdout.readline()
    m = ADDRESS.search(line)
    if not m:
        proc.kill()
        raise StepvoiceError(f"server did not start: {line!r} {Path(log).read_text()[-2000:]}")
    return proc, int(m.group(1))
