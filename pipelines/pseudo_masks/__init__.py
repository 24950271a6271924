"""Stage 1: Objects365-style boxes -> one pseudo mask per box -> Parquet shards (Ray Data).

``config`` (the job's typed settings), ``decode`` (torch-free decode tasks), ``stage`` (the
teacher actor), ``shards`` (plan, write, validate), ``job`` (the driver), ``quality`` (IoU
against true masks, overlays). Importing this package imports nothing heavy.
"""
