"""Reading an outside service's answer without letting its size decide the bot's memory or
hold up the event loop: a body is read up to a limit and no further."""

from __future__ import annotations

import aiohttp

# A search page, a PSA record, a directory page: far below this. More is not the service's
# API (a URL naming a download, a server gone wrong), and is not read into memory.
MAX_BODY = 32 * 1024 * 1024
# An error's body is read for its message only: one larger than this is not read further (nor
# parsed on the event loop, which a body of many MB would hold up for everyone).
MAX_ERROR_BODY = 256 * 1024


async def read_capped(response: aiohttp.ClientResponse, limit: int = MAX_BODY) -> bytes | None:
    """The body, or None when it is larger than `limit` (read no further than that)."""
    if response.content_length is not None and response.content_length > limit:
        return None
    chunks: list[bytes] = []
    size = 0
    async for chunk in response.content.iter_chunked(256 * 1024):
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
    return b"".join(chunks)
