"""Watching Varg: the HTTP client, the learned run times, the poll policy and the poll loop."""
