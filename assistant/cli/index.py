"""`stepvoice index add|search|list|rm`: the retrieval index in the data dir."""
from __future__ import annotations

import argparse
import json
import sys
from typing import Any


def register(subparsers: Any, common: argparse.ArgumentParser) -> None:
    p = subparsers.add_parser("index", help="index documents and audio for retrieval, and search them")
    sub = p.add_subparsers(dest="index_command", metavar="ACTION", required=True)
    emb = argparse.ArgumentParser(add_help=False)
    emb.add_argument("--embedder", default=None,
                     help="text embedder: e5 (default, multilingual), minilm, hash, a model folder or hub id "
                          "(env STEPVOICE_TEXT_EMBEDDER); one per data dir")

    add = sub.add_parser("add", parents=[common, emb], help="index files and folders (text, md, html, pdf, audio)")
    add.add_argument("paths", nargs="+", metavar="PATH")
    add.add_argument("--skip-bad", action="store_true", help="skip unreadable files instead of adding nothing")
    add.add_argument("--follow-links", action="store_true",
                     help="also index files that links inside the folders point to outside them (off: such links are skipped)")
    add.add_argument("--json", action="store_true", help="print the report as JSON")
    add.set_defaults(handler=add_paths)

    search = sub.add_parser("search", parents=[common, emb], help="search the index")
    search.add_argument("query", nargs="?", default=None, help="text query")
    search.add_argument("--audio", default=None, metavar="WAV", help="find indexed clips by voice instead")
    search.add_argument("--k", type=int, default=5, help="number of hits (default 5)")
    search.add_argument("--kind", default=None, help="only rows of this kind (text, transcript, audio)")
    search.add_argument("--source", default=None, help="only rows of this source")
    search.add_argument("--json", action="store_true", help="print hits as JSON")
    search.set_defaults(handler=search_index)

    ls = sub.add_parser("list", parents=[common, emb], help="list indexed sources")
    ls.add_argument("--json", action="store_true")
    ls.set_defaults(handler=list_sources)

    rm = sub.add_parser("rm", parents=[common, emb], help="remove sources (paths as listed, or as given to add)")
    rm.add_argument("sources", nargs="+", metavar="SOURCE")
    rm.set_defaults(handler=remove_sources)


def _open(args: argparse.Namespace):
    from stepvoice.assistant.paths import data_dir
    from stepvoice.retrieval import Retriever

    return Retriever.open(data_dir(args.data_dir), text_embedder=args.embedder)


def add_paths(args: argparse.Namespace) -> int:
    with _open(args) as r:
        report = r.add_paths(args.paths, skip_bad=args.skip_bad, follow_links=args.follow_links,
                             progress=sys.stderr.isatty())
    if args.json:
        print(json.dumps(report.__dict__, ensure_ascii=False))
        return 0
    print(f"added {len(report.added)} source(s), {report.items} item(s); {len(report.unchanged)} unchanged")
    for problem in report.skipped:
        print(f"skipped: {problem}")
    return 0


def search_index(args: argparse.Namespace) -> int:
    from stepvoice.engine.errors import ConfigError

    if args.k <= 0:
        raise ConfigError("--k must be a positive number")
    if (args.query is None) == (args.audio is None):
        raise ConfigError("give a text QUERY or --audio WAV (one of them)")
    with _open(args) as r:
        if args.audio:
            from stepvoice.engine.audio import load_audio

            hits = r.search_audio(load_audio(args.audio), args.k, kind=args.kind, source=args.source)
        else:
            hits = r.search(args.query, args.k, kind=args.kind, source=args.source)
    if args.json:
        print(json.dumps([h.to_dict() for h in hits], ensure_ascii=False))
        return 0
    if not hits:
        print("no results")
    for n, h in enumerate(hits, 1):
        text = " ".join(h.text.split())
        print(f"{n}. [{h.score:.3f}] {h.kind} {h.source}")
        if text:
            print(f"   {text[:200]}{'…' if len(text) > 200 else ''}")
    return 0


def list_sources(args: argparse.Namespace) -> int:
    with _open(args) as r:
        rows = r.sources()
    if args.json:
        print(json.dumps(rows, ensure_ascii=False))
        return 0
    if not rows:
        print("the index is empty (add files with `stepvoice index add PATH...`)")
    for s in rows:
        print(f"{s['kind']:<10} {s['items']:>5}  {s['source']}")
    return 0


def remove_sources(args: argparse.Namespace) -> int:
    from stepvoice.engine.errors import StepvoiceError

    with _open(args) as r:
        counts = {s: r.remove(s) for s in args.sources}
    missing = [s for s, n in counts.items() if n == 0]
    for s, n in counts.items():
        if n:
            print(f"removed {n} item(s) of {s}")
    if missing:
        raise StepvoiceError(f"not in the index: {', '.join(missing)} (see `stepvoice index list`)")
    return 0
