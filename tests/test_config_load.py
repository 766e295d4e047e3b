"""Assistant config: TOML file, then STEPVOICE_* env, then flags; clear one-line errors; `config show`."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import tomllib

import pytest

from stepvoice.assistant.config import AssistantConfig, load_config, to_toml
from stepvoice.engine.errors import ConfigError

TOML = """
model = "scripted:replies.yaml"
reply = "speech"

[generation]
temperature = 0.3

[tools]
timeout_s = 4
disabled = ["search"]

[tools.weather]
units = "imperial"

[[tools.mcp_servers]]
name = "notes"
command = "python"
args = ["-m", "notes_server"]

[tool_loop]
max_rounds = 2

[rag]
mode = "tool-only"
"""


def test_file_then_env_then_flags(tmp_path):
    f = tmp_path / "c.toml"
    f.write_text(TOML)
    env = {"STEPVOICE_GENERATION__TEMPERATURE": "0.9", "STEPVOICE_RAG__K": "7", "STEPVOICE_HOME": "/elsewhere",
           "STEPVOICE_TOOLS__DISABLED": "search,get_weather"}
    cfg = load_config(f, {"generation.temperature": 0.0, "voice": "deep", "device": None}, env=env)
    assert cfg.model == "scripted:replies.yaml" and cfg.reply == "speech"
    assert cfg.generation.temperature == 0.0  # flag beats env beats file
    assert cfg.rag.k == 7 and cfg.rag.mode == "tool-only"
    assert cfg.tools.timeout_s == 4.0 and cfg.tools.weather.units == "imperial"
    assert cfg.tools.disabled == ["search", "get_weather"]
    assert cfg.tools.mcp_servers[0].name == "notes" and cfg.tools.mcp_servers[0].args == ["-m", "notes_server"]
    assert cfg.tool_loop.max_rounds == 2 and cfg.voice == "deep" and cfg.device is None


def test_env_names_the_file_and_default_file_may_be_absent(tmp_path, monkeypatch):
    f = tmp_path / "c.toml"
    f.write_text('reply = "speech"\n')
    assert load_config(env={"STEPVOICE_CONFIG": str(f)}).reply == "speech"
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    assert load_config(env={}) == AssistantConfig()  # no file in the platform dir: defaults
    platform_file = tmp_path / "xdg" / "stepvoice" / "config.toml"
    platform_file.parent.mkdir(parents=True)
    platform_file.write_text("[rag]\nk = 9\n")
    assert load_config(env={}).rag.k == 9


@pytest.mark.parametrize("text, env, words", [
    ('reply = "shout"', {}, "reply"),
    ("[rag]\nmode = 'sometimes'", {}, "rag.mode"),
    ("colour = 3", {}, "unknown setting colour"),
    ("[tools]\ntimeout_s = -1", {}, "tools.timeout_s"),
    ("[generation]\nmax_new_tokens = 'many'", {}, "generation.max_new_tokens"),
    ("model = [", {}, "malformed TOML"),
    ("", {"STEPVOICE_TOOL_LOOP__MAX_ROUNDS": "lots"}, "tool_loop.max_rounds"),
    ("", {"STEPVOICE_RAG__MODEE": "off"}, "unknown setting rag.modee"),
])
def test_bad_settings_give_one_clear_line(tmp_path, text, env, words):
    f = tmp_path / "c.toml"
    f.write_text(text)
    with pytest.raises(ConfigError, match=words) as e:
        load_config(f, env=env)
    assert "\n" not in str(e.value)


def test_other_parts_variables_are_left_alone():
    env = {"STEPVOICE_TOKEN": "secret", "STEPVOICE_TEXT_EMBEDDER": "hash", "STEPVOICE_VLLM_URL": "http://x",
           "STEPVOICE_LIVE": "1", "STEPVOICE_MODEL": "scripted:x.yaml"}
    assert load_config(env=env).model == "scripted:x.yaml"


def test_a_named_file_that_is_missing_is_an_error(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "nope.toml", env={})


def test_to_toml_round_trips(tmp_path):
    f = tmp_path / "c.toml"
    f.write_text(TOML)
    cfg = load_config(f, env={})
    again = tmp_path / "again.toml"
    again.write_text(to_toml(cfg))
    tomllib.loads(again.read_text())
    assert load_config(again, env={}) == cfg


def test_config_show_cli(tmp_path):
    f = tmp_path / "c.toml"
    f.write_text(TOML)
    env = {k: v for k, v in os.environ.items() if not k.startswith("STEPVOICE_")}
    env["STEPVOICE_RAG__MODE"] = "off"
    out = subprocess.run([sys.executable, "-m", "stepvoice", "config", "show", "--json", "--config", str(f),
                          "--device", "cpu"], capture_output=True, text=True, env=env, timeout=120)
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    assert data["settings"]["rag"]["mode"] == "off" and data["settings"]["device"] == "cpu"
    assert data["settings"]["tools"]["weather"]["units"] == "imperial"
    bad = tmp_path / "bad.toml"
    bad.write_text("reply = 'shout'")
    out = subprocess.run([sys.executable, "-m", "stepvoice", "config", "show", "--config", str(bad)],
                         capture_output=True, text=True, env=env, timeout=120)
    assert out.returncode == 1 and out.stderr.startswith("error: ") and out.stderr.count("\n") == 1
    assert "Traceback" not in out.stderr


def test_env_lists_tables_and_engine_keys():
    env = {"STEPVOICE_TOOLS__TOOLS_MODULES": '["a.py", "b.py"]', "STEPVOICE_TOOLS__POLICY": '{"search": "deny"}',
           "STEPVOICE_COMPILE": "off", "STEPVOICE_T2W_STEPS": "5", "STEPVOICE_STYLE": "whisper",
           "STEPVOICE_PREFIX_CACHE": "false", "STEPVOICE_ALLOW_ORIGINS": '["https://a.example"]'}
    cfg = load_config(env=env)
    assert cfg.tools.tools_modules == ["a.py", "b.py"] and cfg.tools.policy == {"search": "deny"}
    assert cfg.compile == "off" and cfg.t2w_steps == 5 and cfg.style == "whisper" and cfg.prefix_cache is False
    assert cfg.allow_origins == ["https://a.example"]
    assert load_config(env={"STEPVOICE_ALLOW_ORIGINS": "https://a, https://b"}).allow_origins == ["https://a", "https://b"]
    for bad, words in [({"STEPVOICE_TOOLS__POLICY": "{oops"}, "tools.policy: malformed JSON"),
                       ({"STEPVOICE_T2W_STEPS": "0"}, "t2w_steps"),
                       ({"STEPVOICE_ALLOW_ORIGINS": "[oops"}, "allow_origins: malformed JSON"), ({"STEPVOICE_QUANTIZE": "int3"}, "quantize")]:
        with pytest.raises(ConfigError, match=words) as e:
            load_config(env=bad)
        assert "\n" not in str(e.value)


def test_a_section_is_checked_on_assignment_and_copies_keep_the_rest():
    cfg = AssistantConfig()
    with pytest.raises(ValueError):
        cfg.rag.k = 0
    other = cfg.model_copy(update={"voice": "deep"})
    assert other.voice == "deep" and other.rag == cfg.rag and cfg.voice is None
