"""The waiting-room rules that need no I/O of their own: rooms, schedules, the grant loop."""
