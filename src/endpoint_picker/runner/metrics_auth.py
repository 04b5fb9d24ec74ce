"""Guarding ``/metrics`` as upstream does: TokenReview + SubjectAccessReview, optional TLS.

Upstream's metrics server uses controller-runtime's ``WithAuthenticationAndAuthorization``
(``--metrics-endpoint-auth``, on by default): the caller's bearer token is checked with a
TokenReview, then the user it names must be allowed ``get`` on the non-resource URL
``/metrics`` (a SubjectAccessReview), which is what Prometheus' service account gets from the
``ClusterRole`` in ``deploy/base/rbac.yaml``. No token or a rejected one is 401, a known user
without the right is 403. Answers are cached for a few seconds per token so a scrape does not
cost two API calls. ``--metrics-cert-dir`` (and ``--metrics-client-ca-file``) add TLS
(and required client certificates) to the port.
"""

from __future__ import annotations

import logging
import ssl
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from aiohttp import web

from endpoint_picker.clock import SYSTEM_CLOCK, Clock
from endpoint_picker.errors import ConfigError
from endpoint_picker.runner.upstream_flags import UpstreamSettings

log = logging.getLogger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
CACHE_SECONDS = 10.0


class MetricsReviewer:
    """Asks the Kubernetes API whether a bearer token may ``get`` a path; caches the answer."""

    def __init__(self, client: Any, *, clock: Clock = SYSTEM_CLOCK) -> None:
        self.client = client
        self.clock = clock
        self._cache: dict[tuple[str, str], tuple[float, int]] = {}

    async def status(self, token: str, path: str) -> int:
        """200 (allowed), 401 (not authenticated) or 403 (not authorized)."""
        now = self.clock.now()
        hit = self._cache.get((token, path))
        if hit is not None and hit[0] > now:
            return hit[1]
        code = await self._review(token, path)
        self._cache[(token, path)] = (now + CACHE_SECONDS, code)
        if len(self._cache) > 1024:  # tokens rotate: keep the cache from growing without end
            self._cache = {k: v for k, v in self._cache.items() if v[0] > now}
        return code

    async def _review(self, token: str, path: str) -> int:
        from lightkube.models.authentication_v1 import TokenReviewSpec
        from lightkube.models.authorization_v1 import (
            NonResourceAttributes,
            SubjectAccessReviewSpec,
        )
        from lightkube.resources.authentication_v1 import TokenReview
        from lightkube.resources.authorization_v1 import SubjectAccessReview

        review = await self.client.create(TokenReview(spec=TokenReviewSpec(token=token)))
        status = review.status
        if status is None or not status.authenticated or status.user is None:
            return 401
        user = status.user
        access = await self.client.create(
            SubjectAccessReview(
                spec=SubjectAccessReviewSpec(
                    user=user.username,
                    groups=user.groups,
                    uid=user.uid,
                    extra=user.extra,
                    nonResourceAttributes=NonResourceAttributes(path=path, verb="get"),
                )
            )
        )
        allowed = access.status is not None and bool(access.status.allowed)
        return 200 if allowed else 403


def auth_middleware(reviewer: MetricsReviewer) -> Any:
    """An aiohttp middleware that guards ``/metrics`` with ``reviewer``, and the status page
    (``/``, ``/status.json``) with the same permission: everything but ``/healthz`` is reviewed
    as a ``get`` of ``/metrics``."""

    @web.middleware
    async def guard(request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.path == "/healthz":
            return await handler(request)
        header = request.headers.get("Authorization", "")
        token = header[len("Bearer ") :].strip() if header.startswith("Bearer ") else ""
        if not token:
            return web.Response(status=401, text="Unauthorized\n")
        try:
            code = await reviewer.status(token, "/metrics")
        except Exception as err:  # the API unreachable: deny, and say why in the log
            log.warning("metrics auth: review failed: %s", err)
            return web.Response(status=500, text="authentication failed\n")
        if code == 200:
            return await handler(request)
        return web.Response(status=code, text="Unauthorized\n" if code == 401 else "Forbidden\n")

    return guard


def server_ssl_context(cert_dir: str, client_ca: str | None) -> ssl.SSLContext:
    """TLS for the metrics port from ``tls.crt``/``tls.key``; client certs when a CA is given."""
    folder = Path(cert_dir)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        ctx.load_cert_chain(folder / "tls.crt", folder / "tls.key")
    except (OSError, ssl.SSLError) as err:
        raise ConfigError(f"cannot load tls.crt/tls.key: {err}", path="--metrics-cert-dir") from err
    if client_ca:
        try:
            ctx.load_verify_locations(client_ca)
        except (OSError, ssl.SSLError) as err:
            raise ConfigError(f"cannot load CA: {err}", path="--metrics-client-ca-file") from err
        ctx.verify_mode = ssl.CERT_REQUIRED
    return ctx


async def metrics_guard(
    up: UpstreamSettings, source: Any
) -> tuple[ssl.SSLContext | None, list[Any]]:
    """(ssl context, middlewares) for the metrics server, from upstream's flags."""
    ctx = (
        server_ssl_context(up.metrics_cert_dir, up.metrics_client_ca)
        if up.metrics_cert_dir
        else None
    )
    if not up.metrics_auth:
        return ctx, []
    api_client = getattr(source, "api_client", None)
    if api_client is None:
        raise ConfigError("needs Kubernetes mode", path="--metrics-endpoint-auth")
    return ctx, [auth_middleware(MetricsReviewer(await api_client()))]
