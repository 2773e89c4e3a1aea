"""Pure domain logic: no processes, no network, no clock."""
