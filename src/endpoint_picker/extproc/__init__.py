"""The Envoy ext_proc front: protocol translation only, every decision is the director's."""

from endpoint_picker.extproc.server import EXT_PROC_SERVICE, ExtProcServer
from endpoint_picker.extproc.stream import ResponseIncomplete

__all__ = [
    "EXT_PROC_SERVICE",
    "ExtProcServer",
    "ResponseIncomplete",
]
