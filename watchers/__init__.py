"""Platform watchers: each module turns one platform's API into Observations."""

import sys

# httpx's __init__ imports its command-line client (httpx._main), which loads rich and
# pygments whenever they are installed (rich is, for our CLI): about 4 MB and 30 ms at
# every start for a program nocontact never runs (#15). A None entry makes that import
# fail the way httpx expects when its CLI extras are absent (``httpx.main`` then only
# says so). Only when httpx is not loaded yet: a host program's choice stands.
if "httpx" not in sys.modules:
    sys.modules.setdefault("httpx._main", None)  # type: ignore[arg-type]
