"""Running the EPP: composition (``app``), the metrics port, ``epp run`` and ``epp demo``."""
