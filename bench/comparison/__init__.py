"""The peer comparison behind `bench/compare.py`: systems, workloads, processes, report."""
