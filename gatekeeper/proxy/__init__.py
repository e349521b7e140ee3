"""The reverse proxy: forwarding every request to one origin, knowing nothing of queues."""
