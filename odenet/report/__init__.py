"""Reports for people: Markdown pages and pictures of analyses (and, later, of trained networks)."""
