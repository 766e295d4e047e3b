"""`stepvoice index add|search|list|rm` through the real CLI entry point."""
from __future__ import annotations

import json

import pytest

from stepvoice.assistant.cli import main


@pytest.fixture
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("STEPVOICE_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("STEPVOICE_TEXT_EMBEDDER", "hash")  # the CLI plumbing, not embedding quality, is tested here
    return tmp_path


def run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_add_search_list_rm(home, capsys):
    docs = home / "docs"
    docs.mkdir()
    (docs / "boats.txt").write_text("Sailing boats lean with the wind and tack to go upwind.")
    (docs / "bread.md").write_text("Bread dough rises when yeast ferments the sugars.")
    code, out, _ = run(capsys, "index", "add", str(docs))
    assert code == 0 and "added 2 source(s), 2 item(s)" in out
    code, out, _ = run(capsys, "index", "add", str(docs / "boats.txt"))
    assert code == 0 and "1 unchanged" in out

    code, out, _ = run(capsys, "index", "search", "sailing boats upwind", "--k", "1", "--json")
    hits = json.loads(out)
    assert code == 0 and len(hits) == 1 and hits[0]["source"].endswith("boats.txt") and hits[0]["score"] > 0.3
    code, out, _ = run(capsys, "index", "search", "yeast dough")
    assert code == 0 and out.startswith("1. [") and "bread.md" in out.splitlines()[0]

    code, out, _ = run(capsys, "index", "list", "--json")
    assert sorted(r["source"].rsplit("/", 1)[1] for r in json.loads(out)) == ["boats.txt", "bread.md"]
    code, out, _ = run(capsys, "index", "rm", str(docs / "boats.txt"))
    assert code == 0 and "removed 1 item(s)" in out
    code, out, _ = run(capsys, "index", "list")
    assert "boats.txt" not in out and "bread.md" in out


@pytest.mark.parametrize(
    "argv, message",
    [
        (["index", "add", "/no/such/file.txt"], "no such file"),
        (["index", "search", "x", "--k", "0"], "--k must be a positive"),
        (["index", "search"], "give a text QUERY or --audio"),
        (["index", "rm", "never-added"], "not in the index: never-added"),
        (["index", "search", "--audio", "/no/such.wav"], "audio"),
    ],
)
def test_errors_are_one_line(home, capsys, argv, message):
    code, out, err = run(capsys, *argv)
    assert code == 1 and err.startswith("error: ") and message in err and err.count("\n") == 1


def test_bad_file_adds_nothing(home, capsys):
    good, bad = home / "good.txt", home / "bad.txt"
    good.write_text("fine text")
    bad.write_bytes(b"\xff\xfe\x00\x81")
    code, _, err = run(capsys, "index", "add", str(good), str(bad))
    assert code == 1 and "nothing was added" in err
    code, out, _ = run(capsys, "index", "list", "--json")
    assert json.loads(out) == []
    code, out, _ = run(capsys, "index", "add", "--skip-bad", str(good), str(bad))
    assert code == 0 and "added 1 source(s)" in out and "skipped:" in out
