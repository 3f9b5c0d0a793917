"""``cdx channel migrate``: run extension scripts on channel and offline-register databases.

- :mod:`.scripts` finds the scripts of a directory, their dialect and checksum, and cuts them
  into the batches executed (T-SQL on ``GO`` lines); :mod:`.statements` into single statements.
- :mod:`.history` is the table recording each completed script in its database.
- :mod:`.rules` and :mod:`.table_rules` check a script against the extension rules before it runs
  (:mod:`.context` is what they know of the topology); :mod:`.grants` plans the grants;
  :mod:`.checks` combines both for the runner.
- :mod:`.execute` runs one script in one transaction with a time limit; :mod:`.runner` the pending
  scripts of one database; :mod:`.fleet` many databases, and the hooks of ``channel init`` and ``sink``.
- :mod:`.keys` compares deployed extension tables' keys with their parents' (``topology validate --databases``).
"""
