"""A job's path through the worker, in the order it takes.

- `protocol`: the worker's Redis protocol on one queue (take, pop, start, ack, retry, dead,
  requeue, recover, promote), bound once to its keys; its scripts are in `lua/`.
- `slots`: the concurrency cap, as leases taken before a job leaves Redis.
- `consumer`: the thread that takes jobs, decodes them (`decode`), counts their starts and
  hands them to the event loop.
- `running`: the registry of jobs handed to the loop; it releases each job's lease.
- `runner`: one attempt on the event loop: timeout, handler, then its outcome.
- `outcomes`: recording the outcome (`worker.retry` says when to try again).
"""
