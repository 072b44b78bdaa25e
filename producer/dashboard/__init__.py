"""`producer dashboard`: a web UI to watch and run the queues (docs/dashboard.md).

`settings` (what to serve, from where), `access` (the token, CSRF and read-only rules),
`overview` and `cache` (the queues' counts and workers, read at a bounded cost and shared by
every page), `browsing` (the queue, job and dead-letter pages' reads), `actions` (what the
buttons do), `chart` (the throughput chart, drawn as SVG on the server), `filters` (how values
are shown) and `pages` (the aiohttp routes). Templates and static files ship inside the
package: no CDN, no build step.
"""

from __future__ import annotations

from producer.dashboard.pages import create_app
from producer.dashboard.settings import DashboardSettings, SettingsError

__all__ = ["DashboardSettings", "SettingsError", "create_app"]
