"""The fast front: pick over Envoy ``ext_authz`` (HTTP/1.1), complete over the access-log stream.

Where the project writes the Envoy configuration itself (``epp run``, its own sidecar), this
front replaces the per-request ext_proc stream with one plain HTTP side-call per request and
one long-lived gRPC access-log stream per Envoy worker. The director is the same as behind
ext_proc; see ``docs/fast-front.md`` for what differs (estimated usage, the flush interval).
"""

from endpoint_picker.fastfront.server import FastFront

__all__ = ["FastFront"]
