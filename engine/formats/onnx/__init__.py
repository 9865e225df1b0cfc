"""ONNX both ways: export RS Seg models (with Deepness metadata) and run ONNX models.

``export``    torch network → ONNX graph with the card and Deepness metadata (needs torch, onnx)
``metadata``  RS Seg card ↔ ONNX ``metadata_props`` (RS Seg card, Deepness keys, graph shapes)
``graph``     what an ONNX graph takes and gives (inputs, outputs, final activation, custom ops)
``runtime``   onnxruntime sessions: providers for a device, clear errors (needs onnxruntime only)
``model``     :class:`~engine.formats.onnx.model.OnnxModel`, usable wherever a ``LoadedModel`` is
``runtime_graph`` an ``.rsmodel``'s own onnxruntime graph (normalised inputs), cached by hash
``quantize``  int8 static quantisation of that graph, checked against fp32
``cli``       ``python -m engine export`` (and ``--quantize int8``)

Running an ONNX model needs only ``onnxruntime`` (no torch); the ``onnx`` package, when
installed, reads the graph first (final activation, custom-operator refusal).  Exporting needs
torch and onnx.
"""
