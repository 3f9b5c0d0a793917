"""Demo retail data: the sample topology's tables (:mod:`.retail_schema`), deterministic
master data (:mod:`.seed`), an HQ change generator (:mod:`.workload`) and a POS simulator
(:mod:`.pos`). Used by ``cdx demo``, the tests and the benchmarks; nothing in the kernel
depends on it (the checksum helper is :mod:`cdx.verify`).
"""
