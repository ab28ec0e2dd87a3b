"""The nocontact service: config, matching, evidence store, alerts, scheduler, CLI."""

__version__ = "0.1.0"
