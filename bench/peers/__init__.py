"""The peers of the benchmark: one adapter per library, each run in its own virtual environment
(see `peer_common.py`). Importable as `bench.peers.peer_common` by coroq's bench tasks."""
