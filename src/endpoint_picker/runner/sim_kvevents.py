"""``epp run --simulate N`` with a precise-prefix config: make the simulators publish KV events
where the config's ``precise-prefix-cache-producer`` listens.

- ``kvEventsConfig.zmqEndpoint`` set (llm-d's central mode, e.g. ``tcp://0.0.0.0:5557``): every
  simulator connects its PUB there (on the EPP's ``--host``), as llm-d-inference-sim's
  ``--zmq-endpoint`` does; the topic ``kv@<ip:port>@<model>`` names the speaker.
- otherwise (per-endpoint subscriptions): every simulator binds its own free port, and the
  runner tells the producer which port is whose (``EppOptions.kv_events_addresses``), since
  all simulators share 127.0.0.1 where pods would each have ``<ip>:5557``.

A config without the precise producer leaves the simulators' KV events off.
"""

from __future__ import annotations

from typing import Any

from endpoint_picker.runner.app import EppOptions
from endpoint_picker.scheduling.plugins.precise_params import PreciseProducerParams


def sim_kv_event_overrides(options: EppOptions) -> dict[str, Any]:
    """Simulator knobs for the config ``options`` names (empty when no precise producer)."""
    from endpoint_picker.config import load_config
    from endpoint_picker.config.loader import load_config_text

    if options.config_text:
        cfg = load_config_text(options.config_text)
    else:
        cfg = load_config(options.config_file)
    for plugin in cfg.plugins.values():
        if plugin.type_name != "precise-prefix-cache-producer":
            continue
        params = plugin.params
        assert isinstance(params, PreciseProducerParams)
        central = params.kv_events_config.zmq_endpoint
        if central:
            host = options.host if options.host not in ("", "0.0.0.0") else "127.0.0.1"
            for wildcard in ("0.0.0.0", "*"):
                central = central.replace(f"://{wildcard}:", f"://{host}:")
            return {"kv_events_endpoint": central}
        return {"kv_events_port": -1}
    return {}
