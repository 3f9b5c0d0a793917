"""The ``cdx`` command line: the only place that composes kernel, connectors and streams."""
