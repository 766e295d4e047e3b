"""Tools run under a policy, stuck sync tools cannot starve the engine, huge results never block the loop."""
from __future__ import annotations

import asyncio
import sys
import textwrap
import threading
import time

import pytest

from stepvoice.engine.events import ToolCall
from stepvoice.tools import ToolContext, ToolRegistry, ToolsConfig, load_registry, run, tool
from stepvoice.tools.policy import CONFIRMER, allow_list_confirmer, decide
from stepvoice.tools.pool import ToolPool

MCP_SERVER = textwrap.dedent('''
    import os
    try:
        from mcp.server.mcpserver import MCPServer as Server  # mcp >= 2
    except ImportError:
        from mcp.server.fastmcp import FastMCP as Server  # mcp 1.x

    server = Server("files")

    @server.tool()
    def delete_file(path: str) -> str:
        """Delete a file."""
        os.remove(path)
        return "deleted " + path

    server.run()
''')


@pytest.fixture(scope="module")
def mcp_script(tmp_path_factory):
    path = tmp_path_factory.mktemp("mcp") / "files_server.py"
    path.write_text(MCP_SERVER)
    return path


def test_mcp_delete_file_is_refused_by_default_and_asks_under_confirm(mcp_script, tmp_path):
    victim = tmp_path / "precious.txt"
    victim.write_text("keep me")
    servers = [{"name": "files", "command": sys.executable, "args": [str(mcp_script)]}]
    asked: list[str] = []

    async def yes(call, t):
        asked.append(call.name)
        return True

    async def no(call, t):
        asked.append(call.name)
        return False

    async def main():
        default = ToolsConfig.from_dict({"mcp_servers": servers})
        confirm = ToolsConfig.from_dict({"mcp_servers": servers, "policy": {"mcp:files": "confirm"}})
        call = ToolCall("delete_file", {"path": str(victim)})
        async with load_registry(default, plugins=False) as registry:
            denied = await run(call, ToolContext(config=default), registry)
            nobody = await run(call, ToolContext(config=confirm), registry)  # confirm, but no one to ask
            token = CONFIRMER.set(no)
            try:
                refused = await run(call, ToolContext(config=confirm), registry)
            finally:
                CONFIRMER.reset(token)
            still_there = victim.exists()
            token = CONFIRMER.set(yes)
            try:
                allowed = await run(call, ToolContext(config=confirm), registry)
            finally:
                CONFIRMER.reset(token)
        return denied, nobody, refused, still_there, allowed

    denied, nobody, refused, still_there, allowed = asyncio.run(main())
    assert not denied.ok and "not allowed" in denied.content
    assert not nobody.ok and "confirmation" in nobody.content
    assert not refused.ok and "did not allow" in refused.content
    assert still_there
    assert asked == ["delete_file", "delete_file"]
    assert allowed.ok and not victim.exists()


def test_policy_order_and_defaults():
    @tool
    def get_date_time() -> str:
        """Now."""
        return "now"

    class Fake:
        name = "read_file"
        source = "MCP server fs"

    assert decide(get_date_time, {}).mode == "allow"
    assert decide(Fake(), {}).mode == "deny"
    assert decide(Fake(), {}, mcp_default="confirm").mode == "confirm"
    assert decide(Fake(), {"mcp:fs": "allow"}).mode == "allow"
    assert decide(Fake(), {"mcp:fs": "allow", "read_file": "deny"}).mode == "deny"  # exact name first
    assert decide(get_date_time, {"get_*": "deny"}).mode == "deny"
    with pytest.raises(Exception, match="allow, confirm or deny"):
        ToolsConfig.from_dict({"policy": {"x": "maybe"}})


def test_run_tasks_allow_list_confirmer():
    async def main():
        confirm = allow_list_confirmer(["get_*"])
        return await confirm(ToolCall("get_weather", {}), None), await confirm(ToolCall("delete_file", {}), None)

    assert asyncio.run(main()) == (True, False)


def test_eight_stuck_sync_tools_do_not_slow_model_steps():
    release = threading.Event()
    started = threading.Semaphore(0)

    @tool(timeout=0.3)
    def stuck() -> str:
        """Never returns (until the test ends)."""
        started.release()
        release.wait(30)
        return "late"

    reg = ToolRegistry()
    reg.add(stuck)
    pool = ToolPool(8)

    async def model_step_ms() -> float:
        t0 = time.perf_counter()
        await asyncio.to_thread(lambda: sum(range(1000)))  # what model steps and token2wav use
        return (time.perf_counter() - t0) * 1000

    async def main():
        ctx = ToolContext(pool=pool)
        before = min([await model_step_ms() for _ in range(5)])
        results = await asyncio.gather(*(run(ToolCall("stuck", {}), ctx, reg) for _ in range(8)))
        during = sorted([await model_step_ms() for _ in range(20)])
        t0 = time.perf_counter()
        ninth = await run(ToolCall("stuck", {}), ctx, reg)
        ninth_ms = (time.perf_counter() - t0) * 1000
        return before, during, results, ninth, ninth_ms

    try:
        before, during, results, ninth, ninth_ms = asyncio.run(main())
    finally:
        release.set()
    print(f"to_thread latency: before {before:.2f} ms, with 8 stuck tools median {during[10]:.2f} ms "
          f"max {during[-1]:.2f} ms; 9th call answered in {ninth_ms:.1f} ms")
    assert during[-1] < 100, during  # the default executor is free: stuck tools hold only their own pool
    assert all(not r.ok and "still running" in r.content for r in results)
    assert "stopped" not in results[0].content
    assert not ninth.ok and "busy" in ninth.content and ninth_ms < 100


def test_a_50_mb_result_is_cut_before_any_processing_and_never_blocks_the_loop():
    # built before the clock starts: what is measured is the runner's work on them, not the tool's
    page = "<|EOT|>x" * (50 * 1024 * 1024 // 8)
    rows = {"rows": [{"i": i, "text": "y" * 100} for i in range(200_000)]}

    @tool
    def huge_text() -> str:
        """A 50 MB page."""
        return page

    @tool
    def huge_json() -> dict:
        """A big structure."""
        return rows

    reg = ToolRegistry()
    reg.add(huge_text)
    reg.add(huge_json)

    async def main():
        lags: list[float] = []
        stop = asyncio.Event()

        async def ticker():
            while not stop.is_set():
                t0 = time.perf_counter()
                await asyncio.sleep(0.01)
                lags.append(time.perf_counter() - t0 - 0.01)

        tick = asyncio.create_task(ticker())
        ctx = ToolContext()
        t0 = time.perf_counter()
        text = await run(ToolCall("huge_text", {}), ctx, reg)
        t_text = time.perf_counter() - t0
        t0 = time.perf_counter()
        data = await run(ToolCall("huge_json", {}), ctx, reg)
        t_json = time.perf_counter() - t0
        stop.set()
        await tick
        return text, data, max(lags), t_text, t_json

    text, data, worst, t_text, t_json = asyncio.run(main())
    print(f"50 MB text result in {t_text * 1000:.1f} ms, 200k-row JSON in {t_json * 1000:.0f} ms; "
          f"worst loop lag {worst * 1000:.1f} ms")
    limit = ToolsConfig().max_result_chars
    assert text.ok and len(text.content) < limit + 200 and "truncated" in text.content
    assert data.ok and len(data.content) < limit + 200
    assert worst < 0.1


def test_terminal_confirmer_reads_a_yes():
    import io

    from stepvoice.tools.policy import terminal_confirmer

    async def ask(answer: str) -> bool:
        out = io.StringIO()
        ok = await terminal_confirmer(io.StringIO(answer), out)(ToolCall("delete_file", {"path": "/x"}), None)
        assert 'delete_file({"path": "/x"})' in out.getvalue()
        return ok

    assert asyncio.run(ask("y\n")) is True
    assert asyncio.run(ask("\n")) is False
    assert asyncio.run(ask("")) is False  # end of input: no


def test_run_task_allows_confirm_tools_only_when_it_names_them():
    from stepvoice.assistant.task_runner import TaskRunner
    from stepvoice.tools.policy import CONFIRMER

    class Parts:
        backend = None
        tools = None
        retriever = voice_bank = token2wav = None

    class T:
        tools = ("delete_file",)
        voice = None
        task = "chat"
        target_lang = None

    async def main():
        runner = TaskRunner.__new__(TaskRunner)
        runner.parts, runner.config = Parts(), None
        try:
            runner.session_for(T())
        except Exception:
            pass  # building the Session itself needs a backend; the confirmer is set first
        named = await CONFIRMER.get()(ToolCall("delete_file", {}), None)
        other = await CONFIRMER.get()(ToolCall("rm_rf", {}), None)
        T.tools = True
        try:
            runner.session_for(T())
        except Exception:
            pass
        return named, other, CONFIRMER.get()

    named, other, unnamed = asyncio.run(main())
    assert named is True and other is False and unnamed is None


def test_mcp_content_is_cut_while_it_is_joined():
    from types import SimpleNamespace

    from stepvoice.tools.mcp_client import render_content

    blocks = [SimpleNamespace(type="text", text="x" * 1_000_000) for _ in range(50)]  # 50 MB of text blocks
    text = render_content(blocks, 4000)
    assert 4000 < len(text) < 4100 and text.endswith("[more content not shown]")
    assert render_content(blocks[:1]) == "x" * 1_000_000  # without a limit: everything


def test_serve_refuses_to_start_naming_an_mcp_server_that_cannot_start(tmp_path):
    import os
    import subprocess

    script = tmp_path / "script.yaml"
    script.write_text("replies:\n  - text: hi\n")
    cfg = tmp_path / "config.toml"
    cfg.write_text(f'[[tools.mcp_servers]]\nname = "ghost"\ncommand = "{tmp_path / "no-such-binary"}"\n')
    env = {**os.environ, "STEPVOICE_HOME": str(tmp_path / "home"), "STEPVOICE_TEXT_EMBEDDER": "hash",
           "HF_HUB_OFFLINE": "1"}
    r = subprocess.run([sys.executable, "-m", "stepvoice", "serve", "--port", "0", "--model", f"scripted:{script}",
                        "--config", str(cfg)], capture_output=True, text=True, env=env, timeout=180)
    assert r.returncode != 0
    assert "ghost" in r.stderr and "Traceback" not in r.stderr, r.stderr
    assert "stepvoice serving" not in r.stdout  # it never listened
