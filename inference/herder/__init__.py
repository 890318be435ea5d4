"""The herder: a priority queue of calls (`calls`), worker processes that run them (`worker`, `pool`),
and the paid-call service that prices, reserves, records and settles them (`service`).

The pool knows nothing of records or fees: a job is a callable `job(payload, context)` run
in a worker process. The service is where calls become Messages, Results and charges.
"""
