"""The built-in pooled HTTP/1.1 origin client (asyncio and httptools)."""
