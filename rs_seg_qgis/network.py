"""QGIS's proxy settings (Settings ▸ Options ▸ Network) as one URL for the engine's downloads."""
from __future__ import annotations

from typing import Optional
from urllib.parse import quote

from qgis.core import QgsSettings

# QGIS proxy types the engine's HTTP client can use (SOCKS needs extra packages)
HTTP_PROXY_TYPES = ("HttpProxy", "HttpCachingProxy", "FtpCachingProxy")


def proxy_url(settings: Optional[QgsSettings] = None) -> Optional[str]:
    """``http://user:password@host:port`` from QGIS's proxy settings, or None when QGIS uses
    none (or the system's: urllib then reads the same environment QGIS does)."""
    s = settings or QgsSettings()
    if not s.value("proxy/proxyEnabled", False, type=bool):
        return None
    kind = s.value("proxy/proxyType", "HttpProxy", type=str)
    host = s.value("proxy/proxyHost", "", type=str).strip()
    if kind not in HTTP_PROXY_TYPES or not host:
        return None
    port = s.value("proxy/proxyPort", "", type=str).strip()
    user = s.value("proxy/proxyUser", "", type=str)
    password = s.value("proxy/proxyPassword", "", type=str)
    auth = f"{quote(user, safe='')}:{quote(password, safe='')}@" if user else ""
    return f"http://{auth}{host}{':' + port if port else ''}"
