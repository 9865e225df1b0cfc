"""The plugin's desktop entries: menu/toolbar actions, the dock on demand, the click tool
toggle, the diagnostics action, and a clean unload."""
from __future__ import annotations

import pytest
from qgis.core import QgsApplication

pytestmark = pytest.mark.qgis


def test_init_gui_dock_tool_and_unload(qgis_iface, qgis_new_project):
    import rs_seg_qgis
    plugin = rs_seg_qgis.classFactory(qgis_iface)
    plugin.initGui()
    try:
        assert [a.text() for a in plugin.actions] == ["RS Seg", "RS Seg: click to segment",
                                                      "Check environment…",
                                                      "Install dependencies…"]
        assert plugin.dock is None  # made on first use only
        icons = [a.icon().pixmap(24, 24).toImage() for a in (plugin.dock_action,
                                                              plugin.click_action)]
        assert not icons[0].isNull() and not icons[1].isNull() and icons[0] != icons[1]
        plugin.dock_action.setChecked(True)
        dock = plugin.dock
        assert dock is not None and dock.windowTitle() == "RS Seg"
        assert [dock.tabs.tabText(i) for i in range(dock.tabs.count())] == \
            ["Segment", "Compare dates", "Train", "Models"]
        canvas = qgis_iface.mapCanvas()
        plugin.click_action.setChecked(True)
        assert canvas.mapTool() is plugin.map_tool and dock.segment.pick.isChecked()
        dock.segment.pick.setChecked(False)
        assert not plugin.click_action.isChecked() and canvas.mapTool() is not plugin.map_tool
        plugin.show_diagnostics()
        assert plugin._diagnostics_dialog.table.rowCount() > 5
        plugin._diagnostics_dialog.close()
    finally:
        plugin.unload()
    assert plugin.dock is None and plugin.map_tool is None and not plugin.actions
    assert QgsApplication.processingRegistry().providerById("rs_seg") is None
