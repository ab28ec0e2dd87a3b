"""The web view (#17): a small server-rendered app over the same store as the CLI."""
