"""Channel sinks: group topics -> channel and offline-register databases, exactly once.

Layers (each a seam other commands build on):

- ``spec``: ``SinkSpec`` / ``sink_specs(topology, ids)``: what one sink reads and writes;
- ``records``: ``Decoder`` -> ``Record`` (routed change + table ``Shape``);
- ``state``: ``StateStore`` / ``SinkState`` / ``Watermark``: offsets and watermarks in the
  channel database's ``cdx_state`` table;
- ``plan``: ``plan_batch``: re-send skipping, row filters, collapse per key (pure);
- ``apply``: ``write_batch``: rows, offsets and watermarks in one transaction;
- ``tables``: ``TableManager``: tables and columns from writer schemas;
- ``dlq``: ``KafkaDeadLetters``: the dead-letter hook;
- ``runner``: ``ChannelSink``: one database, stepped by the host: retries, standby, housekeeping
  (``share``: its share of the feed, the stage source; ``target``: the stage target; ``settings``);
- ``host``: ``SinkHost``: many sinks in one process (``feed``: one shared consumer per Kafka identity;
  ``pool``: the worker threads; ``mirror``: informational offset commits);
- ``init``: ``init_databases`` (``cdx channel init``);
- ``sessions``: ``SessionLog``: the download-session history (``cdx_download_sessions``);
- ``resync``: missed-delete detection (``resync_reason``) and the full rebuild (``Resync``);
- ``letters`` / ``dlq_replay``: reading the dead-letter topic, ``cdx dlq replay``;
- ``rewind``: ``cdx replay``; ``bootstrap``: catch-up progress (``cdx channel bootstrap``);
- ``status`` / ``roles``: ``cdx status``; ``kafkaops`` / ``tools``: shared Kafka look-ups and clients.

See docs/sinks.md and docs/operations.md.
"""
