"""Which Redis errors the worker waits out (and reconnects after) rather than reports."""

from __future__ import annotations

import pytest
from redis.exceptions import (
    BusyLoadingError,
    ConnectionError,
    OutOfMemoryError,
    ReadOnlyError,
    ResponseError,
    TimeoutError,
)

from producer.connection import is_transient, needs_reconnect

IN_A_SCRIPT = (
    "Error running script (call to f_39d6): @user_script:27: @user_script: 27: "
    "-READONLY You can't write against a read only replica."
)


@pytest.mark.parametrize(
    ("error", "transient", "reconnect"),
    [
        (ConnectionError("Connection reset by peer"), True, False),
        (TimeoutError("Timeout reading from socket"), True, False),
        (BusyLoadingError("Redis is loading the dataset in memory"), True, False),
        (ReadOnlyError("You can't write against a read only replica."), True, False),
        (ResponseError(IN_A_SCRIPT), True, True),
        (ResponseError("UNBLOCKED force unblock from blocking operation"), True, True),
        (ResponseError("MASTERDOWN Link with MASTER is down"), True, True),
        (ResponseError("OOM command not allowed when used memory > 'maxmemory'."), True, False),
        (OutOfMemoryError("command not allowed when used memory > 'maxmemory'."), True, False),
        (ResponseError("WRONGTYPE Operation against a key holding the wrong kind"), False, False),
        (ResponseError("ERR unknown command 'LMOVE'"), False, False),
        (ResponseError("Error running script: @user_script:3: bad argument"), False, False),
    ],
)
def test_transient_errors(error: Exception, transient: bool, reconnect: bool) -> None:
    assert is_transient(error) is transient
    assert needs_reconnect(error) is reconnect
