"""What every watcher shares beyond ``watchers.base``: text helpers (``text``), secret
redaction (``redact``) and, for HTTP-speaking watchers, a bounded client (``http``).

It never imports ``service``; the service imports it (one redaction module for logs,
errors, CLI output, stored errors and alert bodies).
"""
