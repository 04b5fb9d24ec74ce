"""File source: manifests + static endpoints into the datastore, and reloads on edit."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest

from endpoint_picker.datastore import Datastore, Event
from endpoint_picker.errors import ConfigError
from endpoint_picker.sources.files import FileSource, parse_endpoint, parse_endpoints

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = (ROOT / "examples" / "pool.yaml").read_text()


def write(path: Path, text: str) -> None:
    """Write and move the mtime forward, so coarse filesystem clocks cannot hide the edit."""
    before = path.stat().st_mtime_ns if path.exists() else 0
    path.write_text(text)
    os.utime(path, ns=(before + 10**9, before + 10**9))


@pytest.fixture
def manifest(tmp_path: Path) -> Path:
    path = tmp_path / "pool.yaml"
    write(path, EXAMPLE)
    return path


def test_parse_endpoints() -> None:
    assert parse_endpoint("127.0.0.1:8001") == ("127.0.0.1:8001", ("127.0.0.1", 8001))
    assert parse_endpoint("a=10.0.0.1:80") == ("a", ("10.0.0.1", 80))
    assert parse_endpoint("[::1]:8000") == ("[::1]:8000", ("::1", 8000))
    assert parse_endpoints(["a=h:1,b=h:2", "h:3"]) == {
        "a": ("h", 1),
        "b": ("h", 2),
        "h:3": ("h", 3),
    }
    for bad in ("nohost", ":80", "h:0", "h:70000", "h:x", "::1:80"):
        with pytest.raises(ConfigError):
            parse_endpoint(bad)
    with pytest.raises(ConfigError, match="given twice"):
        parse_endpoints(["a=h:1", "a=h:2"])


def test_load_fills_the_datastore(manifest: Path) -> None:
    ds = Datastore()
    source = FileSource(ds, [manifest], ["127.0.0.1:8001", "127.0.0.1:8002"])
    assert source.load() is True
    assert ds.pool is not None and ds.pool.metadata.name == "demo-pool"
    assert {o.metadata.name: ds.priority_of(o.metadata.name) for o in ds.objectives()} == {
        "critical": 10,
        "standard": 0,
        "sheddable": -10,
    }
    assert sorted(ep.hostport for ep in ds.endpoints()) == ["127.0.0.1:8001", "127.0.0.1:8002"]


def test_objectives_for_other_pools_are_ignored(manifest: Path) -> None:
    other = EXAMPLE.split("---\n")[1].replace("demo-pool", "other").replace("critical", "x")
    write(manifest, EXAMPLE + "---\n" + other)
    ds = Datastore()
    FileSource(ds, [manifest]).load_or_raise()
    assert sorted(o.metadata.name for o in ds.objectives()) == ["critical", "sheddable", "standard"]


def test_invalid_start_raises_with_every_problem(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    write(bad, (ROOT / "examples" / "invalid" / "bad-group.yaml").read_text())
    ds = Datastore()
    with pytest.raises(ConfigError, match=r"bad.yaml: document 1 .*spec.poolRef.group"):
        FileSource(ds, [bad]).load_or_raise()
    assert ds.objectives() == []


def test_several_pools_need_a_name(manifest: Path, tmp_path: Path) -> None:
    other = tmp_path / "other.yaml"
    write(other, EXAMPLE.split("---\n")[0].replace("name: demo-pool", "name: second"))
    ds = Datastore()
    source = FileSource(ds, [manifest, other])
    assert source.load() is False
    assert "several InferencePools" in str(source.errors[0])
    named = FileSource(ds, [manifest, other], pool_name="second")
    assert named.load() is True
    assert ds.pool is not None and ds.pool.metadata.name == "second"
    assert ds.objectives() == []  # all three refer to demo-pool


async def test_reload_applies_good_edits_and_keeps_last_good_state(manifest: Path) -> None:
    ds = Datastore()
    events: list[Event] = []
    ds.subscribe(lambda ev, obj: events.append(ev))
    source = FileSource(ds, [manifest])
    assert source.load()
    assert await source.check() is False  # unchanged files are not re-read

    write(manifest, EXAMPLE.replace("priority: 10", "priority: 20"))
    events.clear()
    assert await source.check() is True
    assert ds.priority_of("critical") == 20
    assert events == [Event.OBJECTIVE]  # only what changed is written

    write(manifest, EXAMPLE.replace("priority: 10", "priority: high"))
    assert await source.check() is False
    assert ds.priority_of("critical") == 20  # last good state kept
    assert "spec.priority: must be an integer (got 'high')" in str(source.errors[0])
    assert await source.check() is False  # reported once, not re-read until the next edit

    write(manifest, EXAMPLE.split("---\n")[0])  # objectives removed
    assert await source.check() is True
    assert source.errors == [] and ds.objectives() == []

    os.remove(manifest)
    assert await source.check() is False
    assert ds.pool is not None and "cannot read file" in str(source.errors[0])


async def test_run_follows_edits_until_stopped(manifest: Path) -> None:
    ds = Datastore()
    source = FileSource(ds, [manifest], poll_interval=0.01)
    source.load_or_raise()
    task = asyncio.create_task(source.run())
    write(manifest, EXAMPLE.replace("app: vllm-sim", "app: other"))
    for _ in range(500):
        if ds.selector == {"app": "other"}:
            break
        await asyncio.sleep(0.01)
    assert ds.selector == {"app": "other"} and source.loads == 2
    source.stop()
    await asyncio.wait_for(task, 5)
    assert task.done() and task.exception() is None
