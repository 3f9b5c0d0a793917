"""Routing: per-table topics into channel data-group topics."""
