"""The attempt monitor: escalate subjects who keep generating blocked or nearly blocked images.

- :mod:`.settings`: rules, settings, counts and escalations (pure data and functions);
- :mod:`.stores`: where events live (SQLite or Redis);
- :mod:`.monitor`: :class:`AttemptMonitor`.
"""

from genguard.defences.monitor.monitor import AttemptMonitor
from genguard.defences.monitor.settings import Escalation, EscalationRule, MonitorSettings, WindowCounts

__all__ = ["AttemptMonitor", "Escalation", "EscalationRule", "MonitorSettings", "WindowCounts"]
