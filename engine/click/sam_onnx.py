"""SAM's prompt encoder + mask decoder through ONNX Runtime: a click decoded in milliseconds.

The image encoder stays in torch (run once per window); what runs per click and while the
cursor moves — prompt encoding, the two-way transformer, the mask heads — is exported once per
checkpoint to one ONNX graph and cached (:func:`engine.formats.onnx.runtime_graph.cache_dir`,
keyed by a hash of the prompt-encoder and mask-decoder weights).  The graph is
:class:`engine.models.sam.prepared_decoder.PreparedDecoder`: what does not depend on the prompt
is computed once per window (kept with the window's embedding) and fed to every decode.
Prompts go in as SAM's own ONNX export takes them: points and box corners in one list, labels
1 object, 0 background, 2/3 box corners, -1 padding.  The graph returns all four masks and their
IoUs; the best candidate is chosen here and only it is up-sampled (:mod:`.sam_upsample`).
"""
from __future__ import annotations

import contextlib
import hashlib
import io
import threading
import warnings
from typing import Any, Dict, Optional, Sequence, Tuple

import numpy as np
import torch

from ..compute.devices import Device
from ..compute.onnx_runtime import open_session
from ..formats.onnx.runtime_graph import cache_dir, store
from ..jobs import EngineError, ModelFileError
from ..models.sam import Sam
from ..models.sam.predictor import Embedding, MaskResult
from ..models.sam.prepared_decoder import WINDOW_INPUTS, PreparedDecoder, unblock
from .sam_int8 import quantize_decoder
from .sam_upsample import MaskUpsampler

PROMPT_INPUTS = ("point_coords", "point_labels")
OUTPUTS = ("mask_blocks", "iou_predictions")
# Opset 20 has GELU as one operator, which onnxruntime runs 8× faster than the erf formula an
# older opset spells out and it fuses into its own contrib Gelu (the masks' largest activation).
OPSET = 20
# Bumped whenever the graph's inputs or outputs change: a graph cached by an older RS Seg is
# then exported again instead of being fed what it does not take.
GRAPH_VERSION = 4
# Intra-op threads of a decode: the per-click graph is small; more threads cost more in
# hand-over than they save, and the map canvas keeps the other cores.
DECODE_THREADS = 2


def weights_key(sam: Sam) -> str:
    """A hash of the prompt-encoder and mask-decoder weights, of the model frame size (the
    graph's only parameters) and of the graph's version."""
    digest = hashlib.sha256(f"{sam.img_size} v{GRAPH_VERSION}".encode())
    for part in (sam.prompt_encoder, sam.mask_decoder):
        for name, tensor in sorted(part.state_dict().items()):
            digest.update(name.encode())
            digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


def export_decoder(module: PreparedDecoder) -> bytes:
    """The ONNX bytes of ``module``'s per-prompt part (any number of prompt points)."""
    with torch.no_grad():
        window = module.prepare(torch.zeros(1, 256, module.grid, module.grid))
    example = window + (torch.tensor([[[500.0, 400.0], [0.0, 0.0]]]), torch.tensor([[1.0, -1.0]]))
    buffer = io.BytesIO()
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()), \
                torch.inference_mode(False), torch.no_grad():
            warnings.simplefilter("ignore")
            torch.onnx.export(module, example, buffer, dynamo=False, opset_version=OPSET,
                              input_names=list(WINDOW_INPUTS + PROMPT_INPUTS),
                              output_names=list(OUTPUTS),
                              dynamic_axes={"point_coords": {1: "points"},
                                            "point_labels": {1: "points"}})
    except Exception as exc:  # the exporter's own error types
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise ModelFileError(f"SAM's mask decoder could not be exported ({first[:200]})") \
            from None
    return buffer.getvalue()


class OnnxSamDecoder:
    """onnxruntime sessions of a SAM checkpoint's prompt encoder + mask decoder: fp32, and the
    int8 up-scaling variant (:mod:`.sam_int8`, made on first use) for previews."""

    def __init__(self, sam: Sam, threads: int = DECODE_THREADS) -> None:
        self.img_size, self.threads = sam.img_size, threads
        self.module = PreparedDecoder(sam).eval()
        path = cache_dir() / f"sam-decoder-{weights_key(sam)[:24]}.onnx"
        if not path.is_file():
            store(path, export_decoder(self.module))
        self.path = path
        self.session, _ = open_session(path, str(path), Device("cpu"), threads)
        self._int8: Optional[Any] = None
        self._lock = threading.Lock()
        # One thread: a Resize is quick, and a second pool would contend with the decoder's.
        self.upsampler = MaskUpsampler(1)

    def int8_session(self) -> Any:
        """The session of the int8 graph (quantised and cached beside the fp32 one on first
        use), or the fp32 session where it cannot be made: a preview is best effort."""
        with self._lock:
            if self._int8 is None:
                path = self.path.with_name(self.path.stem + "-int8.onnx")
                try:
                    if not path.is_file():
                        quantize_decoder(self.path, path)
                    self._int8, _ = open_session(path, str(path), Device("cpu"), self.threads)
                except (EngineError, ImportError, ValueError, OSError):
                    self._int8 = self.session  # no quantiser, an unwritable cache: fp32 serves
                except Exception as exc:  # the quantiser's and onnxruntime's own errors
                    if not type(exc).__module__.startswith("onnx"):
                        raise
                    self._int8 = self.session
            return self._int8

    def window_inputs(self, emb: Embedding) -> Dict[str, np.ndarray]:
        """The prompt-independent graph inputs of ``emb``'s window, computed on its first
        decode and kept with it."""
        feeds = emb.prepared.get(self.path.name)
        if feeds is None:
            with torch.inference_mode():
                window = self.module.prepare(emb.features.detach().float().cpu())
            feeds = {name: t.numpy() for name, t in zip(WINDOW_INPUTS, window)}
            emb.prepared[self.path.name] = feeds
        return feeds

    def decode(self, emb: Embedding, points: Optional[np.ndarray] = None,
               labels: Optional[np.ndarray] = None, box: Optional[Sequence[float]] = None,
               multimask: bool = True, shape: Optional[Tuple[int, int]] = None,
               precision: str = "fp32") -> MaskResult:
        """As :func:`engine.models.sam.predictor.decode`, through onnxruntime; ``precision``
        "int8" decodes with the int8 up-scaling (previews)."""
        coords, codes = prompts(emb, points, labels, box)
        feeds: Dict[str, Any] = dict(self.window_inputs(emb), point_coords=coords,
                                     point_labels=codes)
        session = self.int8_session() if precision == "int8" else self.session
        blocks, iou = session.run(list(OUTPUTS), feeds)
        first, count = (1, 3) if multimask else (0, 1)
        scores = iou[0, first:first + count]
        best = first + int(scores.argmax())
        low = unblock(blocks[best], self.module.grid)
        mask = self.upsampler.mask(low, self.img_size, emb.resized, emb.size, shape)
        return MaskResult(mask, float(iou[0, best]), [float(v) for v in scores])


def prompts(emb: Embedding, points: Optional[np.ndarray], labels: Optional[np.ndarray],
            box: Optional[Sequence[float]]) -> tuple:
    """SAM's unified prompt arrays (1×N×2 coordinates in the model frame, 1×N labels) for
    window-pixel points (labels 1/0) and an optional box: a padding point when there is no box,
    as the prompt encoder adds one."""
    if points is None and box is None:
        raise ValueError("give at least one point or a box")
    (h, w), (nh, nw) = emb.size, emb.resized
    scale = np.array([nw / w, nh / h], np.float32)
    coords, codes = [], []
    if points is not None:
        coords.append(np.asarray(points, np.float32).reshape(-1, 2) * scale)
        codes.append(np.asarray(labels, np.float32).reshape(-1))
    if box is None:
        coords.append(np.zeros((1, 2), np.float32))
        codes.append(np.array([-1.0], np.float32))
    else:
        coords.append(np.asarray(box, np.float32).reshape(2, 2) * scale)
        codes.append(np.array([2.0, 3.0], np.float32))
    return np.concatenate(coords)[None], np.concatenate(codes)[None]


def onnx_decoder(sam: Sam, device: Any) -> Optional[OnnxSamDecoder]:
    """The onnxruntime decoder for ``sam`` on the CPU, or None (a GPU, or no onnxruntime):
    decoding then stays in torch."""
    if getattr(device, "type", "cpu") != "cpu":
        return None
    try:
        return OnnxSamDecoder(sam)
    except (EngineError, OSError):  # no onnxruntime, no export, an unwritable cache
        return None
    except Exception as exc:  # onnxruntime's own errors: torch still decodes
        if type(exc).__module__.startswith("onnxruntime"):
            return None
        raise

