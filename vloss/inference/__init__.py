"""Using a trained model: any vocabulary on any image.

* :mod:`~vloss.inference.predictor` — :class:`Predictor`: load a checkpoint, set a vocabulary,
  predict panoptic / instance / semantic results (the one inference path; evaluation and batch
  prediction wrap it);
* :mod:`~vloss.inference.postprocess` — the network's outputs to results (PyTorch), and
  :mod:`~vloss.inference.postprocess_numpy` — the same with NumPy only, for an exported network;
* :mod:`~vloss.inference.export` — the network with a vocabulary baked in (ONNX, TorchScript);
* :mod:`~vloss.inference.predict_cli`, :mod:`~vloss.inference.export_cli` — ``python -m vloss
  predict|export``.

Nothing is imported here, so that a command's ``--help`` stays fast.
"""
