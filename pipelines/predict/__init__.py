"""Stage 4: a trained model over many images as a Ray job (any vocabulary) -> Parquet shards (+ overlays).

``config`` (the job's settings), ``inputs`` (the image listing and its plan), ``stage`` (the
predictor actor), ``job`` (the driver). Decoding is :mod:`pipelines.common.inference_decode`.
Importing this package imports nothing heavy.
"""
