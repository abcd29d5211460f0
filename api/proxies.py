"""Whose X-Forwarded-For names the visitor: uvicorn's FORWARDED_ALLOW_IPS, and its default on a Space.

Every per-visitor bound of this app (correction and upload rates, queue joins, open connections,
Train tab streams, explanations at once) keys on the address uvicorn puts in the request, which is the
peer's unless the peer is a trusted proxy: then it is the rightmost address of X-Forwarded-For that is
not itself a trusted proxy (so a visitor who sends a header of their own still counts as themselves).

uvicorn trusts 127.0.0.1 and ::1 by default. On a Hugging Face Space the app is reached only through the
Space's proxy, from an address of the platform's private network (`request.client.host` is an internal
address such as 10.16.3.80 there, and X-Forwarded-For carries the visitor's: mteb's leaderboard Space,
embeddings-benchmark/mteb#4754). With uvicorn's default every visitor of a public Space was one client:
one visitor's 30 corrections a minute, 600 queue joins a minute or 6 Train tab streams were everyone's,
and 256 open connections were the whole Space's. So where SPACE_ID is set and FORWARDED_ALLOW_IPS is
not, the private networks are trusted too. Nobody outside the platform reaches a Space's container from
those addresses; elsewhere the default stays uvicorn's (the README's Settings say how to set it).
"""
from __future__ import annotations

import logging
import os
from typing import Mapping

log = logging.getLogger(__name__)

LOOPBACK = ("127.0.0.1", "::1")  # uvicorn's own default
# RFC 1918, the shared address space of RFC 6598 (some clusters' pod networks) and IPv6 unique local.
PRIVATE_NETWORKS = ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "100.64.0.0/10", "fc00::/7")


def forwarded_allow_ips(environ: Mapping[str, str] = os.environ) -> str | None:
    """The list for uvicorn's `forwarded_allow_ips`, or None to let uvicorn read $FORWARDED_ALLOW_IPS
    (or use its default) itself."""
    if "FORWARDED_ALLOW_IPS" in environ or not environ.get("SPACE_ID", "").strip():
        return None
    trusted = ",".join((*LOOPBACK, *PRIVATE_NETWORKS))
    log.info("on a Hugging Face Space: X-Forwarded-For is believed from the Space's proxy in %s "
             "(set FORWARDED_ALLOW_IPS to choose)", ", ".join(PRIVATE_NETWORKS))
    return trusted
