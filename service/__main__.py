"""``python -m service`` is the same as ``nocontact``."""

from service.cli import main

main()
