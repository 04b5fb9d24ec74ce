"""Issue 18 item 11: an emptied or truncated manifest keeps the last good state with an ERROR
line; an applied reload logs one INFO line with what changed."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pytest

from endpoint_picker.datastore import Datastore
from endpoint_picker.sources.files import FileSource

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = (ROOT / "examples" / "pool.yaml").read_text()


def _write(path: Path, text: str) -> None:
    before = path.stat().st_mtime_ns if path.exists() else 0
    path.write_text(text)
    os.utime(path, ns=(before + 10**9, before + 10**9))


@pytest.fixture
def loaded(tmp_path: Path) -> tuple[FileSource, Path]:
    path = tmp_path / "pool.yaml"
    _write(path, EXAMPLE)
    source = FileSource(Datastore(), [path])
    source.load_or_raise()
    return source, path


@pytest.mark.parametrize(
    "text",
    ["", "\n  \n", "# only a comment\n---\n", EXAMPLE[EXAMPLE.index("---") :].split("---")[1]],
    ids=["empty", "blank", "comments", "pool-cut-off"],
)
async def test_an_emptied_or_truncated_file_keeps_the_last_good_state(
    loaded: tuple[FileSource, Path], text: str, caplog: pytest.LogCaptureFixture
) -> None:
    source, path = loaded
    ds = source.datastore
    _write(path, text)
    with caplog.at_level(logging.ERROR, logger="endpoint_picker.sources.files"):
        assert await source.check() is False
    assert ds.pool is not None and ds.pool.metadata.name == "demo-pool"
    assert ds.priority_of("critical") == 10
    assert any(r.levelno == logging.ERROR for r in caplog.records)
    assert "truncated" in str(source.errors[0])


async def test_an_applied_reload_logs_one_info_line_with_what_changed(
    loaded: tuple[FileSource, Path], caplog: pytest.LogCaptureFixture
) -> None:
    source, path = loaded
    _write(path, EXAMPLE.replace("priority: 10", "priority: 20"))
    with caplog.at_level(logging.INFO, logger="endpoint_picker.sources.files"):
        assert await source.check() is True
    lines = [r.getMessage() for r in caplog.records if r.levelno == logging.INFO]
    assert lines == ["manifests reloaded: objectives changed: critical"]
