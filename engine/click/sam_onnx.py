"""SAM's prompt encoder + mask decoder through ONNX Runtime: a click decoded in milliseconds.

The image encoder stays in torch (run once per window); what runs per click and while the
cursor moves — prompt encoding, the two-way transformer, the mask heads — is exported once per
checkpoint to one ONNX graph and cached (:func:`engine.formats.onnx.runtime_graph.cache_dir`,
keyed by a hash of the prompt-encoder and mask-decoder weights).  Prompts go in as SAM's own
ONNX export takes them: points and box corners in one list, labels 1 object, 0 background,
2/3 box corners, -1 padding.  The graph returns all four masks and their IoUs; the choice and
the up-sampling are :func:`engine.models.sam.predictor.best_mask`, as for torch.
"""
from __future__ import annotations

import contextlib
import hashlib
import io
import warnings
from typing import Any, Optional, Sequence, Tuple

import numpy as np
import torch

from ..compute.devices import Device
from ..compute.onnx_runtime import open_session
from ..formats.onnx.runtime_graph import cache_dir, store
from ..jobs import EngineError, ModelFileError
from ..models.sam import Sam
from ..models.sam.predictor import Embedding, MaskResult, best_mask

INPUTS = ("image_embeddings", "point_coords", "point_labels")
OUTPUTS = ("masks", "iou_predictions")
# Intra-op threads of a decode: the per-click graph is small; more threads cost more in
# hand-over than they save, and the map canvas keeps the other cores.
DECODE_THREADS = 2


class PromptMaskDecoder(torch.nn.Module):
    """Embedding + unified prompts (1024-frame pixels) → 4 mask logits 256² and 4 IoUs."""

    def __init__(self, sam: Sam) -> None:
        super().__init__()
        pe = sam.prompt_encoder
        self.pe_layer, self.img_size = pe.pe_layer, pe.img_size
        self.mask_decoder = sam.mask_decoder
        types = [pe.not_a_point_embed.weight] + [e.weight for e in pe.point_embeddings]
        self.register_buffer("types", torch.cat(types).detach().clone())  # -1, 0, 1, 2, 3
        with torch.no_grad():
            self.register_buffer("dense_pe", pe.dense_pe().clone())
            self.register_buffer("no_mask", pe.no_mask_embed.weight.reshape(1, -1, 1, 1)
                                 .expand(1, -1, pe.grid, pe.grid).clone())

    def forward(self, image_embeddings: torch.Tensor, point_coords: torch.Tensor,
                point_labels: torch.Tensor):
        emb = self.pe_layer.points(point_coords + 0.5, (self.img_size, self.img_size))
        labels = point_labels[..., None]
        emb = emb * (labels != -1)
        for k in range(5):
            emb = emb + (labels == k - 1) * self.types[k]
        return self._all_masks(image_embeddings, emb)

    def _all_masks(self, image: torch.Tensor, sparse: torch.Tensor):
        """All four candidates (the torch path slices one or three of them)."""
        d = self.mask_decoder
        out_tokens = torch.cat([d.iou_token.weight, d.mask_tokens.weight])
        tokens = torch.cat([out_tokens[None], sparse], dim=1)
        src = image + self.no_mask
        _, c, h, w = src.shape
        hs, src = d.transformer(src, self.dense_pe, tokens)
        up = d.output_upscaling(src.transpose(1, 2).reshape(1, c, h, w))
        hyper = torch.stack([mlp(hs[:, 1 + i])
                             for i, mlp in enumerate(d.output_hypernetworks_mlps)], dim=1)
        masks = (hyper @ up.flatten(2)).view(1, -1, *up.shape[-2:])
        return masks, d.iou_prediction_head(hs[:, 0])


def weights_key(sam: Sam) -> str:
    """A hash of the prompt-encoder and mask-decoder weights and of the model frame size (the
    graph's only parameters)."""
    digest = hashlib.sha256(str(sam.img_size).encode())
    for part in (sam.prompt_encoder, sam.mask_decoder):
        for name, tensor in sorted(part.state_dict().items()):
            digest.update(name.encode())
            digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


def export_decoder(sam: Sam) -> bytes:
    """The ONNX bytes of :class:`PromptMaskDecoder` (any number of prompt points)."""
    module = PromptMaskDecoder(sam).eval()
    example = (torch.zeros(1, 256, sam.prompt_encoder.grid, sam.prompt_encoder.grid),
               torch.tensor([[[500.0, 400.0], [0.0, 0.0]]]), torch.tensor([[1.0, -1.0]]))
    buffer = io.BytesIO()
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()), \
                torch.inference_mode(False), torch.no_grad():
            warnings.simplefilter("ignore")
            torch.onnx.export(module, example, buffer, dynamo=False, opset_version=17,
                              input_names=list(INPUTS), output_names=list(OUTPUTS),
                              dynamic_axes={"point_coords": {1: "points"},
                                            "point_labels": {1: "points"}})
    except Exception as exc:  # the exporter's own error types
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise ModelFileError(f"SAM's mask decoder could not be exported ({first[:200]})") \
            from None
    return buffer.getvalue()


class OnnxSamDecoder:
    """An onnxruntime session of a SAM checkpoint's prompt encoder + mask decoder."""

    def __init__(self, sam: Sam, threads: int = DECODE_THREADS) -> None:
        self.img_size = sam.img_size
        path = cache_dir() / f"sam-decoder-{weights_key(sam)[:24]}.onnx"
        if not path.is_file():
            store(path, export_decoder(sam))
        self.path = path
        self.session, _ = open_session(path, str(path), Device("cpu"), threads)

    def decode(self, emb: Embedding, points: Optional[np.ndarray] = None,
               labels: Optional[np.ndarray] = None, box: Optional[Sequence[float]] = None,
               multimask: bool = True, shape: Optional[Tuple[int, int]] = None) -> MaskResult:
        """As :func:`engine.models.sam.predictor.decode`, through onnxruntime."""
        coords, codes = prompts(emb, points, labels, box)
        features = emb.features.detach().cpu().numpy()
        masks, iou = self.session.run(list(OUTPUTS), {
            "image_embeddings": features, "point_coords": coords, "point_labels": codes})
        pick = slice(1, None) if multimask else slice(0, 1)
        return best_mask(torch.from_numpy(masks[:, pick]), torch.from_numpy(iou[:, pick]), emb,
                         self.img_size, shape)


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

