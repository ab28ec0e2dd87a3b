"""Platform watchers: each module turns one platform's API into Observations."""
