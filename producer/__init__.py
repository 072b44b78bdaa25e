"""coroq's producer side: the wire contract (envelope, keys, Lua) and the client."""

from producer.async_client import AsyncProducer
from producer.cancelling import Cancelled, CancelOutcome
from producer.client import Producer
from producer.envelope import JobEnvelope
from producer.errors import (
    CoroqError,
    DurableUnsupported,
    InvalidJob,
    InvalidSchedule,
    JobFailed,
    NotReplicated,
    PartialPush,
    ProducerClosed,
    WaitTimeout,
)
from producer.futures import AsyncJob, Job
from producer.groups import Call, Group, call
from producer.keys import QueueKeys

__all__ = [
    "AsyncJob",
    "AsyncProducer",
    "Call",
    "CancelOutcome",
    "Cancelled",
    "CoroqError",
    "DurableUnsupported",
    "Group",
    "InvalidJob",
    "InvalidSchedule",
    "Job",
    "JobEnvelope",
    "JobFailed",
    "NotReplicated",
    "PartialPush",
    "Producer",
    "ProducerClosed",
    "QueueKeys",
    "WaitTimeout",
    "call",
]
