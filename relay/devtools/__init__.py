"""Tools for a laptop and for tests, not the service: the Varg simulator, `varg-relay dev`, a
throwaway Redis and an in-thread HTTP server."""
