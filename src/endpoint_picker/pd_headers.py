"""The request headers llm-d's decode sidecar acts on, in one place for the EPP and Envoy.

The EPP sets them on the request to the decode endpoint (``disagg-profile-handler``,
``data-parallel-profile-handler``); the sidecar reads them and calls the endpoints they name. A
client must never set them itself (it could make a decoder call any host), so the Envoy configs
we write remove a client's before the EPP is asked, and the fast front forwards the EPP's.
"""

from __future__ import annotations

PREFILLER_HEADER = "x-prefiller-host-port"  # llm-d pkg/common/routing PrefillEndpointHeader
ENCODERS_HEADER = "x-encoder-hosts-ports"
DATA_PARALLEL_HEADER = "x-data-parallel-host-port"
SIDECAR_HEADERS = (PREFILLER_HEADER, ENCODERS_HEADER, DATA_PARALLEL_HEADER)
