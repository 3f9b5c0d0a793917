"""The stage runtime's kernel pieces: what every hop (capture, router, sinks, upload, offline sync) shares.

- :mod:`cdx.stage.backoff`: the one back-off policy for retriable failures.

Stages import from here; nothing here imports a connector, a stream or the CLI.
"""
