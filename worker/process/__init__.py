"""The worker process around the job path: the daemon that wires the threads together and
shuts them down (`daemon`), the supervisor of `--processes N` (`supervisor`), the event loop
thread, liveness (`heartbeat`), recovery of lost workers' jobs (`housekeeping`), the loop-lag
`watchdog`, the health and metrics endpoints, and systemd notifications.
"""
