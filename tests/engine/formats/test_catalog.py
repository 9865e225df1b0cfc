"""The torch-free architecture catalogue matches the registry."""
import inspect

from engine.formats.catalog import ARCHITECTURES, NEEDS_AUX
from engine.models import _REGISTRY, architecture


def test_catalogue_equals_registry():
    real = {n: a.task for n, a in _REGISTRY.items() if not n.startswith("test-")}
    assert ARCHITECTURES == real


def test_aux_list_matches_builders():
    takes_aux = {n for n in ARCHITECTURES
                 if "aux_channels" in inspect.signature(architecture(n).builder).parameters}
    assert set(NEEDS_AUX) == takes_aux


def test_self_supervised_list_matches_networks():
    from engine.formats.catalog import SELF_SUPERVISED
    from engine.models import build
    assert set(SELF_SUPERVISED) <= set(ARCHITECTURES)
    for name in SELF_SUPERVISED:
        small = {"depth": 18, "width": 8} if name == "glcnet" else {"base": 4, "depth": 2}
        net = build(name, in_channels=3, num_classes=4, **small)
        assert callable(getattr(net, "ssl_features", None)), name
