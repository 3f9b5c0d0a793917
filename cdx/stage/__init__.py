"""The stage runtime's kernel pieces: what every hop (capture, router, sinks, upload, offline sync) shares.

- :mod:`cdx.stage.backoff`: the one back-off policy for retriable failures;
- :mod:`cdx.stage.letters`: the one dead-letter format (``make_letter``, ``parse_letter``).

Stages import from here; nothing here imports a connector, a stream or the CLI.
"""
