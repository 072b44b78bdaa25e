"""coroq's producer side: the wire contract (envelope, keys, Lua) and the client."""

from producer.client import AsyncProducer, Producer
from producer.envelope import JobEnvelope
from producer.errors import CoroqError, InvalidJob
from producer.keys import QueueKeys

__all__ = ["AsyncProducer", "CoroqError", "InvalidJob", "JobEnvelope", "Producer", "QueueKeys"]
