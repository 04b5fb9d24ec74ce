"""The parts behind upstream's flags: zap-style JSON log lines, certificate reload, metrics TLS."""

from __future__ import annotations

import json
import logging
import os
import ssl
from pathlib import Path

import aiohttp

from endpoint_picker.datastore import Datastore
from endpoint_picker.extproc import tls
from endpoint_picker.runner.logs import JsonFormatter
from endpoint_picker.runner.metrics_auth import server_ssl_context
from endpoint_picker.runner.observability import MetricsServer


def test_json_lines_carry_ts_level_logger_msg_and_extra_fields() -> None:
    record = logging.LogRecord(
        "endpoint_picker.x", logging.WARNING, "f.py", 1, "hi %s", ("a",), None
    )
    record.pool = "p1"
    line = json.loads(JsonFormatter("epoch").format(record))
    assert line["level"] == "warn" and line["logger"] == "endpoint_picker.x"
    assert line["msg"] == "hi a" and line["pool"] == "p1"
    assert line["ts"] == record.created
    iso = json.loads(JsonFormatter().format(record))["ts"]
    assert iso.endswith("Z") and "T" in iso
    debug = logging.LogRecord("x", 5, "f.py", 1, "trace", None, None)
    assert json.loads(JsonFormatter().format(debug))["level"] == "debug"


def _write_pair(folder: Path) -> None:
    key, cert = tls.self_signed()
    (folder / "tls.key").write_bytes(key)
    (folder / "tls.crt").write_bytes(cert)


def test_cert_reload_answers_only_when_the_files_change(tmp_path: Path) -> None:
    _write_pair(tmp_path)
    first, fetch = tls.cert_fetcher(tmp_path, lambda pairs: pairs)
    assert first[0][1] == (tmp_path / "tls.crt").read_bytes()
    assert fetch() is None  # nothing changed: keep serving
    _write_pair(tmp_path)
    later = os.stat(tmp_path / "tls.crt").st_mtime + 5
    os.utime(tmp_path / "tls.crt", (later, later))
    new = fetch()
    assert new is not None and new[0][1] == (tmp_path / "tls.crt").read_bytes()
    assert fetch() is None


async def test_metrics_port_serves_tls_with_metrics_cert_dir(tmp_path: Path) -> None:
    _write_pair(tmp_path)
    server = MetricsServer(Datastore(), port=0, ssl_context=server_ssl_context(str(tmp_path), None))
    await server.start()
    try:
        client = ssl.create_default_context()
        client.check_hostname, client.verify_mode = False, ssl.CERT_NONE
        url = f"https://127.0.0.1:{server.port}/metrics"
        async with aiohttp.ClientSession() as http, http.get(url, ssl=client) as r:
            assert r.status == 200 and "inference_pool_ready_pods" in await r.text()
    finally:
        await server.stop()
