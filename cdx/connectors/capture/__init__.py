"""HQ capture: change tracking on the HQ database feeding the per-table topics."""
