"""Fixtures shared by the plugin tests."""
import pytest
from qgis.core import QgsApplication


@pytest.fixture(scope="module")
def provider(qgis_processing):
    """The rs_seg provider, registered for the module (reused when the plugin already did)."""
    from rs_seg_qgis.processing.provider import RsSegProvider
    registry = QgsApplication.processingRegistry()
    prov = registry.providerById("rs_seg")
    own = prov is None
    if own:
        prov = RsSegProvider()
        assert registry.addProvider(prov)
    yield prov
    if own:
        registry.removeProvider(prov)
