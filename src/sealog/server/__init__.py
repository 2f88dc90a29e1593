"""The HTTP service and the viewer (``sealog serve``, the ``server`` extra)."""
