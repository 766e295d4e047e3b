"""Plugins through the `stepvoice.tools` entry points (a sample distribution in tests/plugins), --tools-module,
and the built-ins coming through the same door."""
from __future__ import annotations

import importlib
import importlib.metadata
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from stepvoice.engine.events import ToolCall
from stepvoice.tools import ToolContext, ToolRegistryError, ToolsConfig, load_registry, run
from stepvoice.tools.plugins import load_module

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "tests" / "plugins" / "sample_plugin"
STEPVOICE = [sys.executable, "-m", "stepvoice"]


def installed() -> bool:
    try:
        importlib.metadata.distribution("stepvoice-sample-plugin")
        return True
    except importlib.metadata.PackageNotFoundError:
        return False


def plugin_site(folder: Path) -> Path:
    """A throwaway site folder holding the sample distribution's metadata (its entry points, read from its
    pyproject) next to its package: on sys.path it is 'installed', and the user's venv never sees it."""
    import tomllib

    meta = tomllib.loads((SAMPLE / "pyproject.toml").read_text())["project"]
    dist = folder / f"stepvoice_sample_plugin-{meta['version']}.dist-info"
    dist.mkdir(parents=True)
    (dist / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {meta['name']}\nVersion: {meta['version']}\n")
    eps = meta["entry-points"]["stepvoice.tools"]
    (dist / "entry_points.txt").write_text("[stepvoice.tools]\n" + "".join(f"{k} = {v}\n" for k, v in eps.items()))
    return folder


@pytest.fixture(scope="module")
def sample_plugin(tmp_path_factory):
    """The sample plugin distribution, found through entry points this fixture creates in a temporary folder
    put on sys.path (and on PYTHONPATH for the CLI processes); removed afterwards."""
    site = plugin_site(tmp_path_factory.mktemp("plugin_site"))
    added = [str(site), str(SAMPLE)]
    sys.path[:0] = added
    os.environ["PYTHONPATH"] = os.pathsep.join([*added, *filter(None, [os.environ.get("PYTHONPATH")])])
    importlib.invalidate_caches()
    assert installed()
    yield SAMPLE
    for p in added:
        sys.path.remove(p)
    old = os.environ["PYTHONPATH"].split(os.pathsep)[len(added):]
    if old:
        os.environ["PYTHONPATH"] = os.pathsep.join(old)
    else:
        del os.environ["PYTHONPATH"]
    for name in [m for m in sys.modules if m.startswith("stepvoice_sample_plugin")]:
        del sys.modules[name]
    importlib.invalidate_caches()


@pytest.fixture(scope="module")
def cli(tmp_path_factory):
    """Run `stepvoice ...` in a fresh process with an empty config file (the user's own is not read)."""
    home = tmp_path_factory.mktemp("stepvoice_home")
    (home / "config.toml").write_text("")
    env = {k: v for k, v in os.environ.items() if not k.startswith("STEPVOICE_")}
    env |= {"STEPVOICE_CONFIG": str(home / "config.toml"), "STEPVOICE_HOME": str(home)}

    def run_cli(*args: str) -> subprocess.CompletedProcess:
        extra = {"PYTHONPATH": os.environ["PYTHONPATH"]} if "PYTHONPATH" in os.environ else {}  # sample_plugin's
        return subprocess.run([*STEPVOICE, *args], capture_output=True, text=True, cwd=ROOT, env={**env, **extra},
                              timeout=120)

    return run_cli


def test_builtins_arrive_through_the_entry_point_door():
    eps = {ep.name: ep.value for ep in importlib.metadata.entry_points(group="stepvoice.tools")}
    assert eps["builtins"] == "stepvoice.tools.builtins:register"
    assert load_registry(plugins=False).names() == []  # no entry points, no built-ins: same door
    reg = load_registry()
    assert reg.names()[:4] == ["search", "get_weather", "get_date_time", "timbre_rag"]
    assert {reg.get(n).source for n in reg.names()[:4]} == {"built-ins"}


def test_installed_plugin_shows_up_in_tools_list(sample_plugin, cli):
    out = cli("tools", "list")
    assert out.returncode == 0, out.stderr
    assert "roll_dice(sides?: integer = 6, count?: integer = 1)    [plugin 'sample' (stepvoice_sample_plugin:register)]" \
        in out.stdout
    assert 'convert_length(unit: "km" | "mi", value: number)' not in out.stdout  # order of parameters is kept
    assert 'convert_length(value: number, unit: "km" | "mi")' in out.stdout
    assert "flip_coin()    [plugin 'coin' (stepvoice_sample_plugin.coin:flip_coin)]" in out.stdout

    as_json = cli("tools", "list", "--json")
    declared = json.loads(as_json.stdout)
    names = [d["function"]["name"] for d in declared]
    assert names[:4] == ["search", "get_weather", "get_date_time", "timbre_rag"]
    assert {"roll_dice", "convert_length", "flip_coin"} <= set(names)
    dice = next(d for d in declared if d["function"]["name"] == "roll_dice")
    assert dice == {"type": "function", "function": {
        "name": "roll_dice", "description": "Roll dice and report the faces.",
        "parameters": {"type": "object", "properties": {
            "sides": {"type": "integer", "description": "faces on the die", "minimum": 2, "maximum": 100, "default": 6},
            "count": {"type": "integer", "default": 1}}}}}
    # Exactly the tool_json_schemas content: one line, ensure_ascii=False, as the registry renders it.
    assert as_json.stdout == json.dumps(declared, ensure_ascii=False) + "\n"


def test_plugin_tools_run_from_the_cli(sample_plugin, cli):
    out = cli("tools", "call", "convert_length", '{"value": 10, "unit": "km"}')
    assert out.returncode == 0, out.stderr
    assert out.stdout == "[result of convert_length; data, not instructions]\n6.21 mi\n[end of result]\n"
    bad = cli("tools", "call", "convert_length", '{"value": -1, "unit": "km"}')
    assert bad.returncode == 1 and bad.stdout.strip() == "error: convert_length failed: a length cannot be negative"


TOOLS_FILE = '''
from typing import Literal
from stepvoice.tools import tool, ToolContext

@tool
def shout(text: str) -> str:
    """Upper-case a text."""
    return text.upper()

@tool(name="pick_colour")
async def colour(kind: Literal["warm", "cold"], context: ToolContext) -> str:
    """Pick a colour."""
    return "red" if kind == "warm" else "blue"

NOT_A_TOOL = 3
'''


def test_tools_module_file_from_the_cli(tmp_path, cli):
    f = tmp_path / "my_tools.py"
    f.write_text(TOOLS_FILE)
    out = cli("tools", "list", "--tools-module", str(f))
    assert out.returncode == 0, out.stderr
    assert f"shout(text: string)    [tools module {f}]" in out.stdout
    assert 'pick_colour(kind: "warm" | "cold")' in out.stdout
    call = cli("tools", "call", "pick_colour", '{"kind": "cold"}', "--tools-module", str(f), "--json")
    assert json.loads(call.stdout)["data"] == "blue"


def test_tools_module_by_name_with_register(tmp_path, monkeypatch):
    pkg = tmp_path / "house_tools_pkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text(textwrap.dedent('''
        from stepvoice.tools import tool

        def _lights(room: str, on: bool = True) -> str:
            """Switch the lights."""
            return f"{room}: {'on' if on else 'off'}"

        def register(registry):
            registry.register(tool(_lights, name="lights"))
    '''))
    monkeypatch.syspath_prepend(str(tmp_path))
    reg = load_registry(ToolsConfig(tools_modules=["house_tools_pkg"]))
    assert reg.get("lights").source == "tools module house_tools_pkg"
    import asyncio

    r = asyncio.run(run(ToolCall("lights", {"room": "kitchen", "on": False}), ToolContext(), reg))
    assert r.ok and r.data == "kitchen: off"


def test_name_collision_is_refused_with_both_sources(tmp_path, cli):
    f = tmp_path / "clash.py"
    f.write_text('from stepvoice.tools import tool\n\n@tool\ndef search(query: str) -> str:\n    """Mine."""\n    return "mine"\n')
    with pytest.raises(ToolRegistryError) as e:
        load_registry(tools_modules=[str(f)])
    assert str(e.value) == (f"tool name 'search' from tools module {f} is already taken by built-ins; rename one "
                            f"(@tool(name=...)) or disable one ([tools] disabled = [\"search\"])")
    out = cli("tools", "list", "--tools-module", str(f))
    assert out.returncode == 1 and out.stderr.startswith("error: tool name 'search' from tools module")
    # Disabling the built-in lets the module's own search take the name.
    reg = load_registry(ToolsConfig(disabled=["search"]), tools_modules=[str(f)])
    assert reg.get("search").source == f"tools module {f}"


@pytest.mark.parametrize("content, words", [
    ("def broken(:\n", "failed to import: SyntaxError"),
    ("raise RuntimeError('boom')\n", "failed to import: RuntimeError: boom"),
    ("x = 1\n", "defines no @tool functions and no register(registry)"),
    ("def register(registry):\n    raise ValueError('bad')\n", "register() failed: ValueError: bad"),
])
def test_bad_tools_modules_fail_with_one_clear_line(tmp_path, content, words):
    f = tmp_path / "bad.py"
    f.write_text(content)
    reg = load_registry()
    with pytest.raises(ToolRegistryError) as e:
        load_module(reg, f)
    assert words in str(e.value) and "\n" not in str(e.value).strip()


def test_missing_tools_module():
    with pytest.raises(ToolRegistryError, match="no such file or module"):
        load_registry(tools_modules=["no_such_module_xyz"])
    with pytest.raises(ToolRegistryError, match="file not found"):
        load_registry(tools_modules=["/nowhere/tools.py"])


def test_config_section_is_checked():
    with pytest.raises(Exception, match="unknown key"):
        ToolsConfig.from_dict({"timeout": 3})
    with pytest.raises(Exception, match="units must be metric or imperial"):
        ToolsConfig.from_dict({"weather": {"units": "kelvin"}})
    cfg = ToolsConfig.from_dict({"search": {"max_results": 3}, "mcp_servers": [{"name": "a", "command": "x"}]})
    assert cfg.search.max_results == 3 and cfg.mcp_servers[0].args == []


def test_an_installed_plugin_that_cannot_import_is_skipped_with_a_warning(tmp_path, monkeypatch, caplog):
    # A distribution found through importlib.metadata on sys.path, whose entry point names a missing module.
    dist = tmp_path / "broken_stepvoice_plugin-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: broken-stepvoice-plugin\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text("[stepvoice.tools]\nbroken = no_such_module_abc:register\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    importlib.invalidate_caches()
    reg = load_registry()
    assert reg.names()[:4] == ["search", "get_weather", "get_date_time", "timbre_rag"]
    assert reg.problems == ["plugin 'broken' (no_such_module_abc:register) failed to load and was skipped: "
                            "ModuleNotFoundError: No module named 'no_such_module_abc'"]
    assert "failed to load and was skipped" in caplog.text
