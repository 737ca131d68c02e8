"""The engine: jobs, processes, events and stats on an asyncio loop. Imports nothing of
the HTTP layer, the client or the command line."""
