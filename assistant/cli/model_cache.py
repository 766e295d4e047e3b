"""`stepvoice model list|rm`: the checkpoints downloaded into the Hugging Face cache, and removing one."""
from __future__ import annotations

import argparse
import json
from typing import Any


def register_cache(sub: Any, common: argparse.ArgumentParser) -> None:
    ls = sub.add_parser("list", parents=[common], help="list downloaded checkpoints (hub cache) and their size")
    ls.add_argument("--json", action="store_true", help="print one JSON array")
    ls.set_defaults(handler=cmd_list)
    rm = sub.add_parser("rm", parents=[common], help="delete a downloaded checkpoint from the hub cache")
    rm.add_argument("id", help="hub id, as `stepvoice model list` shows it")
    rm.set_defaults(handler=cmd_rm)


def _scan() -> Any:
    from huggingface_hub import scan_cache_dir
    from huggingface_hub.constants import HF_HUB_CACHE

    from stepvoice.engine.errors import StepvoiceError

    try:
        return scan_cache_dir()
    except Exception as e:  # CacheNotFound (no download yet) and unreadable caches alike
        if type(e).__name__ == "CacheNotFound":
            return None
        raise StepvoiceError(f"cannot read the model cache {HF_HUB_CACHE}: {e}") from None


def cmd_list(args: argparse.Namespace) -> int:
    info = _scan()
    repos = sorted((r for r in (info.repos if info else ()) if r.repo_type == "model"), key=lambda r: r.repo_id)
    rows = [{"id": r.repo_id, "bytes": r.size_on_disk, "path": str(r.repo_path),
             "revisions": len(r.revisions)} for r in repos]
    if args.json:
        print(json.dumps(rows))
        return 0
    if not rows:
        print("no downloaded checkpoints (stepvoice model download fetches stepfun-ai/Step-Audio-2-mini)")
        return 0
    width = max(len(r["id"]) for r in rows)
    for r in rows:
        print(f"{r['id']:<{width}}  {r['bytes'] / 1e9:7.2f} GB  {r['path']}")
    return 0


def cmd_rm(args: argparse.Namespace) -> int:
    from stepvoice.engine.errors import StepvoiceError

    info = _scan()
    repo = next((r for r in (info.repos if info else ()) if r.repo_type == "model" and r.repo_id == args.id), None)
    if repo is None:
        raise StepvoiceError(f"{args.id} is not in the model cache (see stepvoice model list)")
    strategy = info.delete_revisions(*(rev.commit_hash for rev in repo.revisions))
    strategy.execute()
    print(f"removed {args.id} ({strategy.expected_freed_size / 1e9:.2f} GB freed)")
    return 0
