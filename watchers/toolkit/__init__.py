"""What every watcher shares beyond ``watchers.base``: text helpers (``text``), secret
redaction (``redact``, with Apprise's metadata in ``apprise_meta``) and, for
HTTP-speaking watchers, a bounded client (``http``, ``httpsettings``), HTTP status
translation (``errors``), bounded decompression (``decompress``) and the XML pre-check
(``xmlguard``).

It never imports ``service``; the service imports it (one redaction module for logs,
errors, CLI output, stored errors and alert bodies).
"""
