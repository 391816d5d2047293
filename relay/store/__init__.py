"""Everything the relay keeps in Redis, behind named operations (`Store`), with its Lua scripts."""
