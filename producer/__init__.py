"""coroq's producer side: the wire contract (envelope, keys, Lua) and the client."""

from producer.client import AsyncProducer, Producer
from producer.envelope import JobEnvelope
from producer.errors import CoroqError, InvalidJob, InvalidSchedule, WaitTimeout
from producer.keys import QueueKeys

__all__ = [
    "AsyncProducer",
    "CoroqError",
    "InvalidJob",
    "InvalidSchedule",
    "JobEnvelope",
    "Producer",
    "QueueKeys",
    "WaitTimeout",
]
