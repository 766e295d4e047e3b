"""The agent: sessions, tool loop, retrieval, voice choice, audio I/O, CLI, server."""
