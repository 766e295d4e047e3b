"""search: web search through ddgs (the maintained successor of duckduckgo-search).

Region, safesearch, result count and backend come from `[tools.search]`.
ddgs is synchronous; it runs in a worker thread.
"""
from __future__ import annotations

import asyncio
from typing import Annotated, Any

from pydantic import Field

from stepvoice.tools.config import SearchConfig
from stepvoice.tools.context import ToolContext
from stepvoice.tools.decorator import ToolOutput, tool
from stepvoice.tools.errors import ToolError

SNIPPET_CHARS = 300  # per result; keeps several results inside the result size cap


@tool
async def search(
    query: Annotated[str, Field(description="what to search the web for")],
    context: ToolContext,
) -> ToolOutput:
    """Search the web and return the top results (title, URL and snippet)."""
    if not query.strip():
        raise ToolError("the search query is empty")
    cfg = context.config.search
    results = await asyncio.to_thread(web_search, query, cfg)
    if not results:
        return ToolOutput(f"no web results for {query!r}", [])
    lines = []
    for i, r in enumerate(results, 1):
        snippet = " ".join(str(r.get("body", "")).split())
        if len(snippet) > SNIPPET_CHARS:
            snippet = snippet[:SNIPPET_CHARS].rsplit(" ", 1)[0] + " ..."
        lines.append(f"{i}. {r.get('title', '').strip()} ({r.get('href', '')})\n   {snippet}")
    return ToolOutput("\n".join(lines), results)


def web_search(query: str, cfg: SearchConfig) -> list[dict[str, Any]]:
    """Top results as dicts with title, href, body; [] when the engines found nothing."""
    from ddgs import DDGS
    from ddgs.exceptions import DDGSException, TimeoutException

    try:
        found = DDGS(timeout=max(1, round(cfg.timeout_s))).text(
            query, region=cfg.region, safesearch=cfg.safesearch, max_results=cfg.max_results, backend=cfg.backend
        )
    except TimeoutException:
        raise ToolError("the search engines did not answer in time") from None
    except DDGSException as e:
        if "no results" in str(e).lower():
            return []
        raise ToolError("web search is unreachable right now (network down or the engines refused)") from e
    return [r for r in found if isinstance(r, dict)][: cfg.max_results]
