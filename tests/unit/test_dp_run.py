"""``epp run --simulate-dp`` without servers: the flag, and the embedded llm-d DP config."""

from __future__ import annotations

from pathlib import Path

import pytest

from endpoint_picker.config import build
from endpoint_picker.config.loader import load_config_text
from endpoint_picker.errors import ConfigError
from endpoint_picker.runner.defaults import dp_config_text
from endpoint_picker.scheduling.plugins.dataparallel import DataParallelProfileHandler

UPSTREAM = Path(__file__).resolve().parents[1] / "data" / "upstream-configs" / "llm-d-router"


def test_simulate_dp_flag_becomes_stack_options() -> None:
    from endpoint_picker.cli import build_parser
    from endpoint_picker.runner.commands import options_from_args

    args = build_parser().parse_args(["run", "--simulate-dp", "3", "--sim-profile", "tiny-test"])
    options = options_from_args(args)
    assert options.simulate_dp == 3 and options.simulate == 0 and options.simulate_pd is None
    for other in (["--simulate", "2"], ["--simulate-pd", "1:1"]):
        both = build_parser().parse_args(["run", "--simulate-dp", "2", *other])
        with pytest.raises(ConfigError, match="--simulate-dp are mutually exclusive"):
            options_from_args(both)
    with pytest.raises(ConfigError, match="--simulate-dp must be at least 1"):
        options_from_args(build_parser().parse_args(["run", "--simulate-dp", "-1"]))


def test_embedded_config_is_llm_ds_with_the_primary_port_set() -> None:
    text = dp_config_text(18123)
    built = build(load_config_text(text))
    handlers = [p for p in built.plugins.values() if isinstance(p, DataParallelProfileHandler)]
    assert [h.params.primary_port for h in handlers] == [18123]
    # Apart from the port (and the comment on top), it is llm-d's file as stored in tests/data.
    upstream = (UPSTREAM / "deploy__config__dp-epp-config.yaml").read_text()
    body = "\n".join(line for line in text.splitlines() if not line.startswith("#"))
    assert body.strip() == upstream.replace("primaryPort: 8000", "primaryPort: 18123").strip()


def test_sim_ports_and_host_can_be_chosen_so_llm_ds_file_runs_unchanged() -> None:
    from endpoint_picker.cli import build_parser
    from endpoint_picker.runner.commands import options_from_args

    argv = ["run", "--simulate-dp", "3", "--sim-base-port", "8000", "--sim-host", "127.0.0.4"]
    options = options_from_args(build_parser().parse_args(argv))
    assert (options.sim_base_port, options.sim_host) == (8000, "127.0.0.4")
    defaults = options_from_args(build_parser().parse_args(["run", "--simulate-dp", "3"]))
    assert (defaults.sim_base_port, defaults.sim_host) == (0, "127.0.0.1")
