"""cdx: Commerce Data Exchange on Apache Kafka (the kernel package)."""

__version__ = "0.1.0"
