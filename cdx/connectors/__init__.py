"""Sources and sinks: HQ capture, channel sinks, upload and the HQ upload sink."""
