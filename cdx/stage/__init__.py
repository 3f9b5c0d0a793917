"""The stage runtime's kernel pieces: what every hop (capture, router, sinks, upload, offline sync) shares.

- :mod:`cdx.stage.contract`: what a stage is (``Source``, ``Target``, ``Stage``) and the contract
  (resumable, idempotent, ordered, typed errors).
- :mod:`cdx.stage.loop`: ``run_stage``, the one loop (batching, back-off, dead letters, shutdown, progress).
- :mod:`cdx.stage.signals`: ``stop_on_signals``, the one SIGTERM/SIGINT helper (handlers restored after).
- :mod:`cdx.stage.metrics`: the metrics every stage exports under the same names.
- :mod:`cdx.stage.backoff`: the one back-off policy for retriable failures;
- :mod:`cdx.stage.letters`: the one dead-letter format (``make_letter``, ``parse_letter``);
- :mod:`cdx.stage.sessions`: what the session tables share (columns, clock, kernel-table names, insert).

Stages import from here; nothing here imports a connector, a stream or the CLI.
"""
