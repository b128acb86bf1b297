"""The decision core: pure functions, no I/O, no asyncio, no clock reads.

``decide`` (``tick``) is the whole decision of one tick. Verdicts (``verdicts``), the sync-state
machine (``syncstate``), the RPO=0 proof (``proof``, ``contact``), adoption (``adopt``), drift
(``drift``), the invariants (``invariants``), one module per rule (``rules``) and one plan
builder per operation (``plans``)."""
