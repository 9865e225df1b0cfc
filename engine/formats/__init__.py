"""Model formats: what a model file is and how models come in and go out.

``card``       the model card: schema, classes, input groups, validation (no torch, no files)
``modelfile``  ``.rsmodel`` files (safetensors + card) and the one ``load_model``/``read_card``
               for every model file, ``.onnx`` included
``create``     a new model file from an architecture (``init-model``)
``catalog``    which architectures exist for which task
``onnx``       ONNX import (graph → card, onnxruntime network) and export
"""
