"""``cdx channel migrate``: run extension scripts on channel and offline-register databases.

- :mod:`.scripts` finds the scripts of a directory, their dialect and checksum, and cuts them
  into the batches executed (T-SQL on ``GO`` lines).
- :mod:`.history` is the table recording each completed script in its database.
- :mod:`.rules` checks a script against the extension rules before it runs.
- :mod:`.runner` runs the pending scripts of one database; :mod:`.fleet` many databases.
"""
