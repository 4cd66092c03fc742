"""Search: spaces, studies, the evolving search."""
